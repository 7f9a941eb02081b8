"""``producer enqueue``, ``status``, ``verify`` and ``dead``: the commands that talk to a
running queue."""

from __future__ import annotations

import contextlib
import difflib
import json
import textwrap
import time
from pathlib import Path

import click
import redis
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from benchmark.common.cli_support import UserError, user_errors
from benchmark.common.names import validate_name
from benchmark.policies.policies_file import PoliciesFile, PoliciesFileError
from benchmark.spec.catalog import SEVERITIES
from benchmark.spec.slicing import WHOLE_SPEC, SpecSlice, slice_options
from benchmark.spec.spec_file import Spec, load_spec
from benchmark.spec.summary import spec_summary
from benchmark.verify.labels import DEFAULT_MAX_TRIES
from producer.cli import Context, cli, group_options, load_filtered, spec_options
from producer.dead_letters import listing_lines, summary_lines, wrapped
from producer.enqueue import (
    SKIP_UNCHANGED,
    EnqueuePlan,
    apply_repairs,
    plan_enqueue,
    results_fingerprint,
    unchanged_since_last_enqueue,
)
from producer.reconcile import Reconciler
from producer.status import (
    collect_status,
    known_policies,
    queue_overview,
    status_table,
    sync_table,
    time_use_table,
    workers_table,
)
from producer.stop_when import clear_stop_rule, forgotten_stops, restore_stops, set_stop_rule
from producer.verify import plan_verify, send_units
from reporting.stop_rule import StopRule, StopRuleError, parse_stop_rule
from worker.queue.fleet_policies import fleet_policies, loadable_policies, unknown_policy_message
from worker.queue.media_budget import full_media_folders
from worker.queue.messages import VERIFY_QUEUE


def do_enqueue(obj: Context, spec: Spec, spec_ref: str, policies, *, dry_run: bool, priority: int,
               requeue_stale_after: float | None, console: Console, whole_spec: bool = False,
               resume_stopped: bool = False, reconciler: Reconciler | None = None,
               stop_rule: StopRule | None = None) -> EnqueuePlan:
    settings = obj.settings
    lock = obj.state.enqueue_lock(spec.sha256)
    if not dry_run and not lock.acquire():
        raise UserError(f"another enqueue of {spec.name} has held its lock for 10 min; try again, or delete "
                        f"the Redis key {lock.name} if that producer is gone")
    try:
        # Taken before the records are read: a record written meanwhile changes it for next time.
        fingerprints = {p: results_fingerprint(settings.results_dir, p) for p in policies} if whole_spec else {}
        fast = (whole_spec and requeue_stale_after is None and reconciler is None and not resume_stopped
                and stop_rule is None)
        if fast and unchanged_since_last_enqueue(
                spec, list(policies), settings.results_dir, obj.state, fingerprints):
            plan = EnqueuePlan()
            plan.skipped[SKIP_UNCHANGED] = spec.episodes_per_policy * len(policies)
        else:
            forgotten = forgotten_stops(obj.state, spec, list(policies), settings.results_dir)
            plan = plan_enqueue(spec, list(policies), settings.results_dir, obj.state,
                                queue=settings.queues[0], requeue_stale_after=requeue_stale_after,
                                resume_stopped=resume_stopped, reconciler=reconciler,
                                stopped_by_notes={i for _, ids in forgotten.values() for i in ids})
            if not dry_run:
                apply_repairs(plan, spec.sha256, obj.state)
                if forgotten and not resume_stopped:
                    restore_stops(obj.state, spec.sha256, forgotten, plan.stopped)
                # Before anything is sent: the first records are counted for the rule.
                if stop_rule is not None:
                    set_stop_rule(obj.state, spec, list(policies), stop_rule, settings.queues[0],
                                  settings.results_dir)
                elif resume_stopped:
                    clear_stop_rule(obj.state, spec, list(policies))
                if plan.to_send:
                    obj.state.publish_ids(spec_ref, spec.sha256, plan.to_send, queue=settings.queues[0],
                                          priority=priority)
                obj.state.set_enqueue_fingerprints(spec.sha256, fingerprints)
    finally:
        if not dry_run:
            with contextlib.suppress(redis.exceptions.LockError):  # lapsed: nothing to give back
                lock.release()
    verb = "would enqueue" if dry_run else "enqueued"
    parts = [f"{verb} {len(plan.to_send):,}"] + [f"skipped {n:,} ({why})" for why, n in plan.skipped.items()]
    if plan.stale:
        parts.append(f"{plan.stale:,} of them stale re-sends")
    if plan.damaged:
        parts.append(f"{len(plan.damaged):,} of them for damaged records")
    if plan.reconciled:
        parts.append(f"{len(plan.reconciled):,} of them for records lost from the results tree")
    if plan.counter_drift:
        parts.append(f"{'would repair' if dry_run else 'repaired'} {len(plan.counter_drift)} status counter(s)")
    # Wrapped here, between parts, so that no terminal cuts a count from its reason.
    for line in textwrap.wrap(f"{spec.name}: " + ", ".join(parts), width=80, subsequent_indent="  ",
                              break_long_words=False, break_on_hyphens=False):
        console.print(line, soft_wrap=True)
    for policy, count in sorted(plan.per_policy.items()):
        console.print(f"  {policy}: {count:,}")
    if stop_rule is not None:
        governed = ", ".join(stop_rule.governs(list(policies)))
        console.print(f"  {'would stop' if dry_run else 'stops'} {governed} when {stop_rule.text} holds "
                      "(checked after each round)", soft_wrap=True)
    for line in reconciler.waiting_lines() if reconciler is not None else []:
        console.print(line, soft_wrap=True)
    return plan


def local_policy_names(obj: Context) -> list[str]:
    """The names this machine can load (its built-ins, entry points and policies file)."""
    return loadable_policies(PoliciesFile.load(obj.settings.policies_file) if obj.settings.policies_file else None)


def refuse_unknown_policies(obj: Context, policies: tuple[str, ...]) -> None:
    """Stop before sending anything for a policy neither the fleet nor this machine can load."""
    fleet = fleet_policies(obj.state.r)
    known = sorted({*fleet, *local_policy_names(obj)})
    unknown = [name for name in policies if name not in known]
    if unknown:
        raise UserError(unknown_policy_message(unknown, known, fleet_empty=not fleet))


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


@cli.command(short_help="Enqueue what SPEC has not done yet (again: nothing new).", epilog="""\b
Examples:
  python -m producer enqueue lm20 --policy Motus
  python -m producer enqueue full --policy Motus --policy Pi05 \\
      --settings bias_lm_always_on --dry-run
  python -m producer enqueue lm20 --policy Motus --policy Pi05 \\
      --stop-when decided:Motus,Pi05
""")
@spec_options
@click.option("--dry-run", is_flag=True, help="Say what would be sent; send nothing.")
@click.option("--priority", type=click.IntRange(0, 9), default=0, show_default=True,
              help="0 is served first (kombu Redis buckets 0, 3, 6, 9).")
@click.option("--requeue-stale", is_flag=True, help="Re-send enqueued episodes whose message was lost.")
@click.option("--stale-after", type=click.FloatRange(min=0), default=600.0, show_default=True,
              help="Seconds since enqueue before an episode may count as stale.")
@click.option("--allow-unknown-policy", is_flag=True,
              help="Enqueue a policy no worker has announced (workers not started yet).")
@click.option("--resume-stopped", is_flag=True,
              help="Send episodes whose messages were withdrawn (a stop rule, dead --purge) too; "
                   "without --stop-when the old rule is dropped.")
@click.option("--stop-when", "stop_when", metavar="RULE",
              help="Stop the slice when RULE holds after a round: width<0.05 (every setting's "
                   "interval narrower) or decided:A,B[,per-setting] (A - B excludes 0).")
@click.option("--reconcile", is_flag=True,
              help="Send done episodes whose record is missing from this results tree, once their "
                   "machine has pushed since (run in a pulled clone).")
@click.option("--lost-machine", "lost_machines", multiple=True, metavar="MACHINE",
              help="With --reconcile: this machine's unpushed records are gone (repeatable).")
@group_options
@click.pass_obj
@user_errors
def enqueue(obj: Context, spec_ref, policies, spec_slice: SpecSlice, dry_run, priority, requeue_stale,
            stale_after, allow_unknown_policy, resume_stopped, reconcile, lost_machines, stop_when) -> None:
    """Enqueue the episodes of SPEC not done yet; running it twice sends nothing new."""
    spec = load_filtered(spec_ref, policies, spec_slice)
    try:
        stop_rule = parse_stop_rule(stop_when, list(policies)) if stop_when is not None else None
    except StopRuleError as exc:
        raise click.UsageError(str(exc)) from None
    warn_unlisted_policies(obj.settings.policies_file, policies, Console(stderr=True))
    if not allow_unknown_policy:
        refuse_unknown_policies(obj, policies)
    if lost_machines and not reconcile:
        raise click.UsageError("--lost-machine goes with --reconcile")
    reconciler = (Reconciler(obj.state, obj.settings.results_dir, obj.settings.machine, lost_machines)
                  if reconcile else None)
    do_enqueue(obj, spec, spec_ref, policies, dry_run=dry_run, priority=priority,
               requeue_stale_after=stale_after if requeue_stale else None, console=Console(),
               whole_spec=spec_slice == WHOLE_SPEC, resume_stopped=resume_stopped, reconciler=reconciler,
               stop_rule=stop_rule)


@cli.command(short_help="Progress per policy: done, queued, running, dead, ETA.", epilog="""\b
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
        with_episodes = known_policies(obj.state, spec.sha256)
        if not policies:
            policies = with_episodes
            if not policies:
                raise UserError(f"nothing enqueued or done for {spec_ref} yet; name the policies with --policy")
        # A typo has neither episodes in Redis nor a folder of records here.
        if missing := [name for name in policies
                       if name not in with_episodes and not (obj.settings.results_dir / name).is_dir()]:
            guesses = [f"{name!r} (did you mean {close[0]!r}?)"
                       if (close := difflib.get_close_matches(name, with_episodes, 1)) else repr(name)
                       for name in missing]
            raise UserError(textwrap.fill(f"nothing enqueued or done for {', '.join(guesses)} in {spec_ref}; "
                                          f"policies with episodes: {', '.join(with_episodes) or 'none'}", 73,
                                          subsequent_indent="  "))

        local = local_policy_names(obj)  # read once; the fleet's names at every refresh

        def table() -> Table:
            shown = status_table(collect_status(spec, list(policies), obj.state, obj.settings.queues[0],
                                                whole_spec=whole, verify=verify,
                                                results_dir=obj.settings.results_dir))
            known = {*fleet_policies(obj.state.r), *local}
            notes = [textwrap.fill(line, 78, subsequent_indent="  ") for line in full_media_folders(obj.state.r)]
            if unknown := [name for name in policies if name not in known]:
                notes.append(textwrap.fill(f"unknown: {', '.join(unknown)} (no worker announced it and this "
                                           "machine cannot load it: its messages end as dead letters)", 78))
            shown.caption = "\n".join(filter(None, [shown.caption, *notes]))
            return shown

    def view() -> Group:
        parts = [table()]
        if spec_ref is not None and (times := time_use_table(obj.state, spec.sha256, list(policies))) is not None:
            parts.append(times)
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


@cli.command(short_help="Enqueue the (setting, task) units of a verification.", epilog="""\b
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


@cli.command(short_help="Dead letters: a summary by reason, --list, --requeue.", epilog="""\b
Examples:
  python -m producer dead
  python -m producer dead --list --reason unknown_policy --limit 20
  python -m producer dead --requeue --reason worker_lost
""")
@click.option("--list", "list_letters", is_flag=True, help="The letters, one line each, by reason.")
@click.option("--reason", "reasons", multiple=True, help="Only letters of this reason (repeatable).")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True,
              help="With --list: at most this many letters (0: all).")
@click.option("--json", "as_json", is_flag=True, help="The letters as JSON lines (time, message, traceback).")
@click.option("--requeue", is_flag=True, help="Publish the dead messages again (after fixing the cause).")
@click.option("--purge", is_flag=True, help="Delete the dead letters; their episodes count as stopped.")
@group_options
@click.pass_obj
@user_errors
def dead(obj: Context, list_letters: bool, reasons: tuple[str, ...], limit: int, as_json: bool, requeue: bool,
         purge: bool) -> None:
    """Dead letters (messages that can never run): a summary by reason, or --list them."""
    if requeue and purge:
        raise click.UsageError("choose --requeue or --purge, not both")
    state = obj.state
    if requeue:
        entries, kept = state.requeue_dead_letters(obj.settings.queues[0], reasons)
    elif purge:
        entries, kept = state.purge_dead_letters(reasons), []
    else:
        entries = [e for e in state.dead_letters() if not reasons or e.get("reason") in reasons]
        kept = []
    if reasons and not (requeue or purge) and not entries:
        known = sorted({str(e.get("reason")) for e in state.dead_letters()})
        raise UserError(f"no dead letters of reason {', '.join(reasons)}; "
                        f"reasons now: {', '.join(known) or 'none'}")
    if as_json:
        for entry in entries:
            click.echo(json.dumps(entry, sort_keys=True))
        return
    known_policies = {*fleet_policies(state.r), *local_policy_names(obj)}
    lines = listing_lines(entries, limit or None) if list_letters else summary_lines(entries, known_policies)
    if requeue:
        lines.append(f"re-published {len(entries):,} messages")
        if kept:
            lines += wrapped(f"kept {len(kept):,} that name no episode (--purge drops them)", "")
    elif purge:
        lines += wrapped(f"purged {len(entries):,} dead letters; their episodes count as stopped "
                         "(enqueue --resume-stopped sends them again)", "")
    click.echo("\n".join(lines))
