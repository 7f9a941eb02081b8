"""``python -m producer``: enqueue episodes, watch progress, handle dead letters, run embedded.

    python -m producer enqueue lm20 --policy Motus --policy Pi05
    python -m producer status lm20 --policy Motus --watch
    python -m producer dead --requeue
    python -m producer run lm20 --policy feedback --tasks adjust_bottle --max-repeat 2 --workers 2
"""

from __future__ import annotations

import functools
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path

import click
import redis
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from benchmark.catalog import SEVERITIES
from benchmark.cli_support import UserError, user_errors
from benchmark.errors import BenchmarkError
from benchmark.names import validate_name
from benchmark.policies import available_policies
from benchmark.policies.policies_file import PoliciesFile, PoliciesFileError
from benchmark.run_settings import check_results_dir
from benchmark.run_summary import print_run_summary
from benchmark.spec import Spec, load_spec
from benchmark.spec_slice import WHOLE_SPEC, SpecSlice, report_command, slice_options
from benchmark.spec_summary import spec_summary
from benchmark.verify import DEFAULT_MAX_TRIES
from producer.embedded import EmbeddedRedis, LocalWorkers
from producer.enqueue import (
    SKIP_UNCHANGED,
    EnqueuePlan,
    apply_repairs,
    plan_enqueue,
    results_fingerprint,
    unchanged_since_last_enqueue,
)
from producer.status import (
    blocked_lines,
    collect_status,
    known_policies,
    queue_overview,
    status_table,
    sync_table,
    workers_table,
)
from producer.verify import plan_verify, send_units
from worker.queue.messages import VERIFY_QUEUE
from worker.queue.state import QueueState, connect
from worker.settings import Settings, check_broker_url, redact_url

log = logging.getLogger("producer")
EXIT_INTERRUPTED = 130


def spec_options(func):
    """SPEC, its policies and its slice: shared by enqueue and run."""
    @click.argument("spec_ref", metavar="SPEC")
    @click.option("--policy", "policies", multiple=True, required=True, help="Policy name (repeatable).")
    @slice_options
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)
    return wrapper


def load_filtered(spec_ref: str, policies: tuple[str, ...], spec_slice: SpecSlice) -> Spec:
    for policy in policies:
        validate_name(policy, "policy")
    try:  # 3x faster on the 25 MB full spec (the report extra has it); json otherwise
        from orjson import loads as fast_loads
    except ImportError:
        fast_loads = None
    return load_spec(spec_ref, fast_loads).filter(spec_slice.settings, spec_slice.tasks, spec_slice.max_repeat)


def _apply_group_option(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``--broker-url``/``--results-dir`` given after the subcommand: they override the group's."""
    if value is not None:
        try:
            ctx.find_object(Context).apply(**{param.name: value})
        except BenchmarkError as exc:  # raised before the command runs, so not through user_errors
            raise UserError(str(exc)) from None


def group_options(func):
    """The group's options, accepted after the subcommand too (``producer status --results-dir r``)."""
    @click.option("--broker-url", callback=_apply_group_option, expose_value=False,
                  help="Redis URL (env RTBENCH_BROKER_URL); also accepted before the subcommand.")
    @click.option("--results-dir", type=click.Path(), callback=_apply_group_option, expose_value=False,
                  help="Results directory (env RTBENCH_RESULTS_DIR); also accepted before the subcommand.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)
    return wrapper


class Context:
    """The command's settings, and a Redis connection made only when a command needs it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._state: QueueState | None = None

    def apply(self, broker_url: str | None = None, results_dir: str | None = None) -> None:
        """The command's ``--broker-url``/``--results-dir`` over the environment's."""
        if broker_url:
            self.settings = replace(self.settings, broker_url=check_broker_url(broker_url, "--broker-url"))
            self._state = None
        if results_dir:
            self.settings = replace(self.settings, results_dir=check_results_dir(results_dir, "--results-dir"))

    @property
    def state(self) -> QueueState:
        if self._state is None:
            client = connect(self.settings.broker_url)
            try:
                client.ping()
            except Exception as exc:
                raise UserError(f"cannot reach the broker at {redact_url(self.settings.broker_url)} ({exc}); "
                                "start Redis or set RTBENCH_BROKER_URL") from None
            self._state = QueueState(client)
        return self._state


class ProducerGroup(click.Group):
    """The commands, with a failure of Redis in the middle of one said in one line (no traceback)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except redis.exceptions.RedisError as exc:
            url = redact_url(ctx.obj.settings.broker_url) if isinstance(ctx.obj, Context) else "the broker"
            raise click.ClickException(broker_failure(exc, url)) from None


def broker_failure(exc: Exception, url: str) -> str:
    """What a Redis error in the middle of a command means, and what to do."""
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        what = (f"Redis at {url} is full (OOM: {exc}); give it more memory (maxmemory) or let workers drain "
                "the queue")
    elif isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        what = f"lost the broker at {url} ({exc})"
    else:
        what = f"Redis at {url} refused a command ({type(exc).__name__}: {exc})"
    # Publishing sends a message before it notes it as enqueued: nothing noted was left unsent.
    return f"{what}. What was done before stays done; run the same command again once Redis is fine"


@click.group(cls=ProducerGroup, epilog="""\b
Examples:
  python -m producer enqueue lm20 --policy Motus
  python -m producer status lm20 --watch
  python -m producer dead --requeue
  python -m producer run lm20 --policy feedback --tasks adjust_bottle --max-repeat 2
""")
@click.option("--broker-url", envvar="RTBENCH_BROKER_URL", help="Redis URL (env RTBENCH_BROKER_URL).")
@click.option("--results-dir", envvar="RTBENCH_RESULTS_DIR", type=click.Path(),
              help="Results directory (env RTBENCH_RESULTS_DIR; default results).")
@click.pass_context
@user_errors
def cli(ctx: click.Context, broker_url: str | None, results_dir: str | None) -> None:
    """Put benchmark episodes on the queue and follow them."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = Context(Settings.from_env())
    ctx.obj.apply(broker_url, results_dir)


def do_enqueue(obj: Context, spec: Spec, spec_ref: str, policies, *, dry_run: bool, priority: int,
               requeue_stale_after: float | None, console: Console, whole_spec: bool = False) -> EnqueuePlan:
    settings = obj.settings
    # Taken before the records are read: a record written meanwhile changes it for next time.
    fingerprints = {p: results_fingerprint(settings.results_dir, p) for p in policies} if whole_spec else {}
    if whole_spec and requeue_stale_after is None and unchanged_since_last_enqueue(
            spec, list(policies), settings.results_dir, obj.state, fingerprints):
        plan = EnqueuePlan()
        plan.skipped[SKIP_UNCHANGED] = spec.episodes_per_policy * len(policies)
    else:
        plan = plan_enqueue(spec, list(policies), settings.results_dir, obj.state,
                            queue=settings.queues[0], requeue_stale_after=requeue_stale_after)
        if not dry_run:
            apply_repairs(plan, spec.sha256, obj.state)
            if plan.to_send:
                obj.state.publish_ids(spec_ref, spec.sha256, plan.to_send, queue=settings.queues[0],
                                      priority=priority)
            obj.state.set_enqueue_fingerprints(spec.sha256, fingerprints)
    verb = "would enqueue" if dry_run else "enqueued"
    parts = [f"{verb} {len(plan.to_send):,}"] + [f"skipped {n:,} ({why})" for why, n in plan.skipped.items()]
    if plan.stale:
        parts.append(f"{plan.stale:,} of them stale re-sends")
    if plan.counter_drift:
        parts.append(f"{'would repair' if dry_run else 'repaired'} {len(plan.counter_drift)} status counter(s)")
    console.print(f"{spec.name}: " + ", ".join(parts))
    for policy, count in sorted(plan.per_policy.items()):
        console.print(f"  {policy}: {count:,}")
    return plan


def warn_unlisted_policies(policies_file: Path | None, policies: tuple[str, ...], console: Console) -> None:
    """Say when the policies file this machine sees does not name a policy being enqueued (the
    workers would then look for it among the built-in and entry-point policies)."""
    if policies_file is None:
        return
    try:
        listed = PoliciesFile.load(policies_file).entries
    except PoliciesFileError as exc:
        console.print(f"[yellow]warning:[/] {exc}")
        return
    for name in policies:
        if name not in listed:
            console.print(f"[yellow]warning:[/] RTBENCH_POLICIES_FILE {policies_file} has no policy {name!r} "
                          f"(it lists {', '.join(listed)}); workers will look for {name!r} among the built-in "
                          "and entry-point policies")


@cli.command(epilog="""\b
Examples:
  python -m producer enqueue lm20 --policy Motus
  python -m producer enqueue full --policy Motus --policy Pi05 --settings bias_lm_always_on --dry-run
""")
@spec_options
@click.option("--dry-run", is_flag=True, help="Say what would be sent; send nothing.")
@click.option("--priority", type=click.IntRange(0, 9), default=0, show_default=True,
              help="0 is served first (kombu Redis buckets 0, 3, 6, 9).")
@click.option("--requeue-stale", is_flag=True, help="Re-send enqueued episodes whose message was lost.")
@click.option("--stale-after", type=click.FloatRange(min=0), default=600.0, show_default=True,
              help="Seconds since enqueue before an episode may count as stale.")
@group_options
@click.pass_obj
@user_errors
def enqueue(obj: Context, spec_ref, policies, spec_slice: SpecSlice, dry_run, priority, requeue_stale,
            stale_after) -> None:
    """Enqueue the episodes of SPEC not done yet; running it twice sends nothing new."""
    spec = load_filtered(spec_ref, policies, spec_slice)
    warn_unlisted_policies(obj.settings.policies_file, policies, Console(stderr=True))
    do_enqueue(obj, spec, spec_ref, policies, dry_run=dry_run, priority=priority,
               requeue_stale_after=stale_after if requeue_stale else None, console=Console(),
               whole_spec=spec_slice == WHOLE_SPEC)


@cli.command(epilog="""\b
Examples:
  python -m producer status
  python -m producer status lm20 --watch
  python -m producer status lm20 --policy Motus --tasks click_bell
""")
@click.argument("spec_ref", metavar="[SPEC]", required=False)
@click.option("--policy", "policies", multiple=True,
              help="Policy (repeatable; default: every policy enqueued or done for SPEC).")
@slice_options
@click.option("--watch", is_flag=True, help="Refresh every 2 s until Ctrl-C (piped output: printed once).")
@click.option("--verify", is_flag=True, help="Count the queue's sets themselves (O(episodes)) and report where "
              "the counters status reads differ (python -m producer enqueue repairs them).")
@click.option("--workers", "each_worker", is_flag=True,
              help="List each busy worker (gpu.slot@machine) with its episode, not one line a machine.")
@group_options
@click.pass_obj
@user_errors
def status(obj: Context, spec_ref, policies, spec_slice: SpecSlice, watch, verify, each_worker) -> None:
    """Per policy: done/expected, queued, running, dead, episodes/min and ETA (without SPEC: the queue)."""
    console = Console()
    if spec_ref is None:
        def table() -> Table:
            return queue_overview(obj.state, obj.settings.queues[0])
    else:
        whole = spec_slice == WHOLE_SPEC
        # The whole spec's status needs its name, sha256 and size only: cached, not loaded (~1 s).
        spec = (spec_summary(spec_ref, lambda ref: load_filtered(ref, policies, spec_slice)) if whole
                else load_filtered(spec_ref, policies, spec_slice))
        for policy in policies:
            validate_name(policy, "policy")
        if not policies:
            policies = known_policies(obj.state, spec.sha256)
            if not policies:
                raise UserError(f"nothing enqueued or done for {spec_ref} yet; name the policies with --policy")

        def table() -> Table:
            return status_table(collect_status(spec, list(policies), obj.state, obj.settings.queues[0],
                                               whole_spec=whole, verify=verify))

    def view() -> Group:
        parts = [table()]
        if (busy := workers_table(obj.state, each_worker)) is not None:
            parts.append(busy)
        if (syncs := sync_table(obj.state)) is not None:
            parts.append(syncs)
        return Group(*parts)

    if not watch or not console.is_terminal:
        console.print(view())  # piped: one snapshot, then exit (a live view would never end)
        return
    try:
        with Live(view(), refresh_per_second=1) as live:
            while True:
                time.sleep(2)
                live.update(view())
    except KeyboardInterrupt:
        pass  # Ctrl-C is how --watch ends


@cli.command(epilog="""\b
Examples:
  python -m producer verify lm20 --backend robotwin
  python -m producer verify full --backend robotwin --severity lm --dry-run
  (workers: RTBENCH_QUEUES=verify RTBENCH_BACKEND=robotwin python -m worker)
""")
@click.argument("spec_ref", metavar="SPEC")
@click.option("--backend", help="Simulator the units run on (default: RTBENCH_BACKEND, else kinematic); the "
              "verify workers must run the same.")
@click.option("--severity", type=click.Choice(SEVERITIES), help="Only this severity's settings.")
@click.option("--master-seed", type=int, help="Seed of the unit generators (default: the spec's).")
@click.option("--max-tries", type=click.IntRange(min=1), default=DEFAULT_MAX_TRIES, show_default=True,
              help="Samples a repeat slot may take to find an effective perturbation.")
@click.option("--dry-run", is_flag=True, help="Say what would be sent; send nothing.")
@group_options
@click.pass_obj
@user_errors
def verify(obj: Context, spec_ref, backend, severity, master_seed, max_tries, dry_run) -> None:
    """Enqueue the (setting, task) units of a verification not done yet, one message each, on the 'verify' queue."""
    from benchmark.backends import available_backends  # numpy: only this command needs it

    base = load_spec(spec_ref)
    backend = backend or obj.settings.backend
    if backend not in available_backends():
        raise UserError(f"--backend {backend!r}: unknown backend; known backends: {', '.join(available_backends())}")
    master_seed = base.master_seed if master_seed is None else master_seed
    plan = plan_verify(base, obj.settings.results_dir, backend, severity, master_seed, max_tries,
                       obj.state.queued_task_ids(VERIFY_QUEUE))
    verb = "would enqueue" if dry_run else "enqueued"
    if not dry_run:
        send_units(obj.state, base, spec_ref, plan, backend, master_seed, max_tries)
    click.echo(f"{base.name}: {verb} {len(plan.units)} units on the '{VERIFY_QUEUE}' queue ({plan.verified} "
               f"verified already, {plan.queued} waiting in the queue); backend {backend}")
    click.echo(f"when all are verified: python -m benchmark.verify --base {spec_ref} --merge --parts-dir "
               f"{plan.folder} --output verified.json")


@cli.command(epilog="""\b
Examples:
  python -m producer dead
  python -m producer dead --requeue
""")
@click.option("--requeue", is_flag=True, help="Publish the dead messages again (after fixing the cause).")
@click.option("--purge", is_flag=True, help="Delete the dead-letter list.")
@group_options
@click.pass_obj
@user_errors
def dead(obj: Context, requeue: bool, purge: bool) -> None:
    """Show the dead-letter list: messages that can never run, with the reason."""
    if requeue and purge:
        raise click.UsageError("choose --requeue or --purge, not both")
    state = obj.state
    if requeue:
        entries, kept = state.requeue_dead_letters(obj.settings.queues[0])
    else:
        entries, kept = (state.take_dead_letters() if purge else state.dead_letters()), []
    table = Table(title=f"dead letters: {len(entries)}")
    for column in ("reason", "episode", "detail", "worker"):
        table.add_column(column)
    for entry in entries:
        table.add_row(entry["reason"], str(entry.get("episode_id")), entry["detail"][:120], entry["worker"])
    Console().print(table)
    if requeue:
        click.echo(f"re-published {len(entries)} messages"
                   + (f"; kept {len(kept)} that name no episode (use --purge to drop them)" if kept else ""))
    elif purge:
        click.echo(f"purged {len(entries)} dead letters")


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
    known = available_policies()
    if obj.settings.policies_file is not None:
        known += sorted(PoliciesFile.load(obj.settings.policies_file).entries)
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


if __name__ == "__main__":
    cli()
