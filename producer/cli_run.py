"""``producer run``: the whole queue on this machine (an embedded Redis, local workers), a
progress bar, and the run's summary."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from benchmark.common.cli_support import UserError, user_errors
from benchmark.policies.policies_file import PoliciesFile
from benchmark.run.summary import print_run_summary
from benchmark.spec.slicing import SpecSlice, report_command
from benchmark.spec.spec_file import Spec
from producer.cli import Context, cli, group_options, load_filtered, spec_options
from producer.cli_queue import do_enqueue
from producer.embedded import EmbeddedRedis, LocalWorkers
from producer.enqueue import EnqueuePlan
from producer.status import blocked_lines
from producer.stop_signals import StopSignals, exit_status
from producer.stop_when import stop_lines
from reporting.stop_rule import StopRuleError, parse_stop_rule
from worker.queue.fleet_policies import loadable_policies
from worker.queue.state import QueueState


@cli.command(short_help="Run SPEC here: embedded Redis, local workers, report.", epilog="""\b
Examples:
  python -m producer run lm20 --policy feedback --tasks adjust_bottle \\
      --max-repeat 2 --workers 2
""")
@spec_options
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Local worker processes.")
@click.option("--skip-expert-check", is_flag=True, help="Do not run the scripted expert before each episode.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".rtbench"),
              show_default=True, help="Where the embedded Redis and the worker logs live.")
@click.option("--stop-when", "stop_when", metavar="RULE",
              help="Stop when RULE holds after a round (as enqueue --stop-when).")
@click.option("--resume-stopped", is_flag=True, help="Run the episodes an earlier stop withdrew too.")
@group_options
@click.pass_obj
@user_errors
def run(obj: Context, spec_ref, policies, spec_slice: SpecSlice, workers, skip_expert_check, data_dir, stop_when,
        resume_stopped) -> None:
    """Run SPEC on this machine: embedded Redis, N local workers, progress, summary; stops all it started.

    Exits 0 when every episode has a record, 1 when some ended in the dead-letter list (shown),
    2 on bad input (before anything starts); 130 on Ctrl-C, 143 on SIGTERM, 129 on a hang-up,
    each after stopping the workers and Redis (a second Ctrl-C kills the workers at once).
    """
    spec = load_filtered(spec_ref, policies, spec_slice)
    try:
        stop_rule = parse_stop_rule(stop_when, list(policies)) if stop_when is not None else None
    except StopRuleError as exc:
        raise click.UsageError(str(exc)) from None
    known = loadable_policies(PoliciesFile.load(obj.settings.policies_file) if obj.settings.policies_file else None)
    unknown = [name for name in policies if name not in known]
    if unknown:
        raise UserError(f"unknown {'policy' if len(unknown) == 1 else 'policies'} {', '.join(map(repr, unknown))}; "
                        f"known policies: {', '.join(known)} (register yours through the "
                        "rtbench.policies entry-point group)")
    console = Console(stderr=True)
    results_dir = obj.settings.results_dir
    redis_server = EmbeddedRedis(data_dir / "redis")
    run_settings = replace(obj.settings, skip_expert_check=skip_expert_check or obj.settings.skip_expert_check)
    pool = LocalWorkers(workers, {}, data_dir / "logs")  # its environment once Redis has its URL
    dead: list[dict] = []
    started_at = time.time()
    with StopSignals() as stops:
        try:
            redis_server.start()
            run_settings = replace(run_settings, broker_url=redis_server.url)
            obj = Context(run_settings)
            pool.env = run_settings.to_env()
            pool.start()
            console.print(f"embedded Redis at {redis_server.redacted_url}, {workers} local workers "
                          f"(logs in {data_dir / 'logs'})")
            plan = do_enqueue(obj, spec, spec_ref, policies, dry_run=False, priority=0, requeue_stale_after=None,
                              console=console, stop_rule=stop_rule, resume_stopped=resume_stopped)
            dead = wait_until_done(obj.state, spec, plan, pool, console, started_at, stops=stop_rule is not None)
            print_dead_letters(dead, console)  # while the embedded Redis still holds them
            for line in stop_lines(obj.state, spec.sha256, list(policies)) if stop_rule is not None else []:
                console.print(line, markup=False, highlight=False)
        except KeyboardInterrupt:
            pass  # Ctrl-C, kill or a hang-up (stops.received says which): clean up below
        except OSError:
            if stops.received is None:
                raise
            # A hang-up closed the terminal while the progress bar drew: clean up below.
        finally:
            stops.cleaning_up()  # a second signal now hurries the cleanup, never cuts it short
            pool.stop(run_settings.shutdown_grace_s + 3, hurry=stops.hurry)
            redis_server.stop()  # after the workers: they say goodbye to it as they stop
        # Still under StopSignals: a signal now hurries nothing and interrupts nothing.
        interrupted = stops.received is not None
        try:
            print_run_summary(spec, policies, results_dir, started_at, interrupted=interrupted, out=Console(),
                              notes=console, report=report_command(spec_ref, policies, spec_slice, results_dir))
            sys.stdout.flush()
            sys.stderr.flush()
        except OSError:
            if stops.received != signal.SIGHUP:
                raise
            output_to_devnull()
    if interrupted:
        sys.exit(exit_status(stops.received))
    if dead:
        raise click.ClickException(f"{len(dead)} episode(s) ended in the dead-letter list (listed above); "
                                   "fix the cause and run the same command again")


def output_to_devnull() -> None:
    """After a hang-up closed the terminal (writes fail with EIO), what is left of the output goes
    nowhere, so that Python's last flush does not turn the exit status into 120."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        os.dup2(devnull, stream.fileno())
        with contextlib.suppress(OSError):
            stream.flush()
    os.close(devnull)


def wait_until_done(state: QueueState, spec: Spec, plan: EnqueuePlan, pool: LocalWorkers, console: Console,
                    started_at: float, stops: bool = False) -> list[dict]:
    """Until every episode sent has ended (a record, a dead letter or, with ``stops``, withdrawn by
    a stop rule); returns this run's dead letters."""
    wanted = set(plan.to_send)
    progress = Progress(TextColumn("[bold]episodes"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[dead]} dead"), TimeRemainingColumn(), console=console)
    shown_blocks: set[str] = set()
    with progress:
        bar = progress.add_task("run", total=len(wanted), dead=0)
        while True:
            finished = len(wanted & state.finished_ids_since(spec.sha256, started_at))
            dead = [entry for entry in state.dead_letters()
                    if entry.get("episode_id") in wanted and entry.get("time", 0) >= started_at]
            progress.update(bar, completed=finished, dead=len(dead))
            withdrawn = len(wanted & state.stopped(spec.sha256)) if stops else 0
            if finished + len({entry["episode_id"] for entry in dead}) + withdrawn >= len(wanted):
                return dead
            for line in blocked_lines(state.blocked_workers()):
                if line not in shown_blocks:
                    shown_blocks.add(line)
                    progress.console.print(f"[bold red]{line}")
            if pool.alive() == 0:
                raise UserError(f"every local worker exited; see {pool.log_dir}")
            time.sleep(0.3)


def print_dead_letters(dead: list[dict], console: Console) -> None:
    """One unwrapped line per dead letter: reason, episode, detail (easy to grep and copy)."""
    if dead:
        console.print(f"[bold red]{len(dead)} dead letter(s) of this run:")
    for entry in dead:
        console.print(f"  {entry['reason']}: {entry.get('episode_id')}: {entry['detail']}", soft_wrap=True,
                      markup=False, highlight=False)
