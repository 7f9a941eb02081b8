"""``producer run``: the whole queue on this machine (an embedded Redis, local workers), a
progress bar, and the run's summary."""

from __future__ import annotations

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
from producer.cli import EXIT_INTERRUPTED, Context, cli, group_options, load_filtered, spec_options
from producer.cli_queue import do_enqueue
from producer.embedded import EmbeddedRedis, LocalWorkers
from producer.enqueue import EnqueuePlan
from producer.status import blocked_lines
from worker.queue.fleet_policies import loadable_policies
from worker.queue.state import QueueState


@cli.command(epilog="""\b
Examples:
  python -m producer run lm20 --policy feedback --tasks adjust_bottle --max-repeat 2 --workers 2
""")
@spec_options
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Local worker processes.")
@click.option("--skip-expert-check", is_flag=True, help="Do not run the scripted expert before each episode.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".rtbench"),
              show_default=True, help="Where the embedded Redis and the worker logs live.")
@group_options
@click.pass_obj
@user_errors
def run(obj: Context, spec_ref, policies, spec_slice: SpecSlice, workers, skip_expert_check, data_dir) -> None:
    """Run SPEC on this machine: embedded Redis, N local workers, progress, summary; stops all it started.

    Exits 0 when every episode has a record, 1 when some ended in the dead-letter list (shown),
    2 on bad input (before anything starts), 130 on Ctrl-C.
    """
    spec = load_filtered(spec_ref, policies, spec_slice)
    known = loadable_policies(PoliciesFile.load(obj.settings.policies_file) if obj.settings.policies_file else None)
    unknown = [name for name in policies if name not in known]
    if unknown:
        raise UserError(f"unknown {'policy' if len(unknown) == 1 else 'policies'} {', '.join(map(repr, unknown))}; "
                        f"known policies: {', '.join(known)} (register yours through the "
                        "rtbench.policies entry-point group)")
    console = Console(stderr=True)
    results_dir = obj.settings.results_dir
    redis_server = EmbeddedRedis(data_dir / "redis")
    pool: LocalWorkers | None = None
    interrupted = False
    dead: list[dict] = []
    started_at = time.time()
    try:
        redis_server.start()
        run_settings = replace(obj.settings, broker_url=redis_server.url,
                               skip_expert_check=skip_expert_check or obj.settings.skip_expert_check)
        obj = Context(run_settings)
        pool = LocalWorkers(workers, run_settings.to_env(), data_dir / "logs").start()
        console.print(f"embedded Redis at {redis_server.redacted_url}, {workers} local workers "
                      f"(logs in {data_dir / 'logs'})")
        plan = do_enqueue(obj, spec, spec_ref, policies, dry_run=False, priority=0, requeue_stale_after=None,
                          console=console)
        dead = wait_until_done(obj.state, spec, plan, pool, console, started_at)
        print_dead_letters(dead, console)  # while the embedded Redis still holds them
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if pool is not None:
            pool.stop()
        redis_server.stop()
    print_run_summary(spec, policies, results_dir, started_at, interrupted=interrupted, out=Console(), notes=console,
                      report=report_command(spec_ref, policies, spec_slice, results_dir))
    if interrupted:
        sys.exit(EXIT_INTERRUPTED)
    if dead:
        raise click.ClickException(f"{len(dead)} episode(s) ended in the dead-letter list (listed above); "
                                   "fix the cause and run the same command again")


def wait_until_done(state: QueueState, spec: Spec, plan: EnqueuePlan, pool: LocalWorkers, console: Console,
                    started_at: float) -> list[dict]:
    """Until every episode sent has ended (a record or a dead letter); returns this run's dead letters."""
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
            if finished + len({entry["episode_id"] for entry in dead}) >= len(wanted):
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
