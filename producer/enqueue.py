"""What ``enqueue`` sends: every episode of the filtered spec that is not done or in flight.

Done means a record (valid or deterministic error) in the local results dir, or the
episode in Redis' done-set (so producers on other machines see it before git sync does).
An episode already enqueued is skipped, unless ``--requeue-stale`` finds it lost: enqueued
long ago, not done, not claimed, and its message in neither the queue nor kombu's unacked
set. Messages go out longest task first (step limit descending) to shorten the tail.

The records are the truth and Redis a cache, so the plan also repairs the cache: episodes
with a done record join the done-set (a mark lost while Redis was down), episodes whose
record is an infrastructure error (``worker_lost``, ``timeout``, ...) or is damaged (truncated,
emptied, unreadable, after its message ended) leave it and are sent again, and the episodes
sent start their attempts from zero.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.common.names import validate_name
from benchmark.records.episodes import iter_episodes
from benchmark.records.results import (
    INVALID,
    JSON_DECODE_ERROR,
    OK,
    OS_ERROR,
    finished_at,
    iter_record_paths,
    read_record,
)
from benchmark.spec.spec_file import Spec
from producer.reconcile import Reconciler
from worker.queue.counters import count_sets, drift
from worker.queue.messages import task_id_maker
from worker.queue.state import QueueState

DAMAGED = (JSON_DECODE_ERROR, INVALID, OS_ERROR)  # not UNSUPPORTED: a newer rtbench wrote that one
SKIP_RECORD = "record in results dir"
SKIP_DONE_SET = "done (Redis done-set)"
SKIP_ENQUEUED = "already enqueued"
SKIP_UNCHANGED = "enqueued or done; no record changed since the last enqueue"
SKIP_STOPPED = "stopped: its message was withdrawn; --resume-stopped sends it"


def results_fingerprint(results_dir: Path, policy: str) -> str:
    """A digest of a policy's record files (size, modification time) and folders. A record
    written, replaced, removed, truncated or emptied changes it; the walk is a stat a file (~50 ms
    for 50,000), where reading the records is ~50,000 reads and parses."""
    digest = hashlib.blake2b(digest_size=16)
    stack = [os.path.join(results_dir, policy)]
    while stack:
        folder = stack.pop()
        try:
            children, files = [], []
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        children.append(entry.path)
                    else:
                        info = entry.stat(follow_symlinks=False)
                        files.append(f"{entry.name}\0{info.st_size}\0{info.st_mtime_ns}\n")
            digest.update(f"{folder}\0{os.stat(folder).st_mtime_ns}\n{''.join(sorted(files))}".encode())
        except OSError:
            continue
        stack.extend(sorted(children, reverse=True))
    return digest.hexdigest()


def unchanged_since_last_enqueue(spec: Spec, policies: list[str], results_dir: Path, state: QueueState,
                                 fingerprints: dict[str, str]) -> bool:
    """Whether nothing can be new: every episode of every policy is enqueued or done (the
    counters say so, O(policies)) and no policy's records changed since the last full enqueue."""
    counts = state.counts(spec.sha256)
    # The counters' totals against the sets' sizes (O(1)): a counter gone wrong takes the full path.
    if state.set_sizes(spec.sha256) != (sum(counts["enqueued"].values()), sum(counts["done"].values())):
        return False
    for policy in policies:
        covered = (counts["enqueued"][policy] + counts["done"][policy] - counts["enqueued_done"][policy]
                   + counts["stopped"][policy])  # withdrawn: sent again only when asked
        if covered < spec.episodes_per_policy:
            return False
    return state.enqueue_fingerprints(spec.sha256, policies) == [fingerprints[p] for p in policies]


@dataclass
class EnqueuePlan:
    to_send: list[str] = field(default_factory=list)   # episode ids, in the order they go out
    skipped: Counter = field(default_factory=Counter)   # reason -> count
    stale: int = 0
    per_policy: Counter = field(default_factory=Counter)  # policy -> to send
    repair_done: list[str] = field(default_factory=list)      # done records missing from the done-set
    repair_not_done: list[str] = field(default_factory=list)  # infrastructure-error records in the done-set
    counter_drift: list[str] = field(default_factory=list)  # status counters that differ from the sets
    damaged: list[str] = field(default_factory=list)  # records that cannot be read: sent again
    reconciled: list[str] = field(default_factory=list)  # done, but the record is lost: sent again
    stopped: list[str] = field(default_factory=list)  # not sent: withdrawn (a stop rule, a purge)
    # Episodes to send that ran before (a stale message, a record that is not done): their attempts
    # start from zero. Episodes never enqueued have none to reset (1,000,000 deletes saved).
    sent_before: list[str] = field(default_factory=list)


def in_rounds(spec: Spec, policies: list[str]) -> Iterator[tuple[str, list[str]]]:
    """The spec's episode ids as (policy, ids) blocks in the order enqueue sends them: in rounds,
    repeat r of every (setting, task) before repeat r + 1, so that at any moment of a run the
    finished episodes cover every (setting, task) within about one round (a partial run is a
    fair estimate, and the report's confidence sequences use completed rounds); within a
    round, longest step limit first (it shortens the tail), then (policy, setting, task). Ids
    are built as strings: 1,000,000 key objects would cost seconds."""
    for policy in policies:
        validate_name(policy, "policy")
    by_limit: dict[int, list[str]] = defaultdict(list)  # step limit -> "setting/task"
    for setting in spec.settings:
        for task in spec.tasks:
            by_limit[spec.step_limits[task]].append(f"{setting.id}/{task}")
    limits = sorted(by_limit, reverse=True)
    for repeat in range(spec.repeats):
        for limit in limits:
            for policy in policies:
                yield policy, [f"{policy}/{pair}/episode_{repeat}" for pair in by_limit[limit]]


class _Planner:
    """The decision for one episode that Redis or the results know something about."""

    def __init__(self, plan: EnqueuePlan, results_dir: Path, spec_sha: str, done: set[str],
                 enqueued: dict[str, float], on_disk: dict[str, str], running: set[str],
                 queued: set[str] | None, requeue_stale_after: float | None, stopped: set[str],
                 lost: set[str]) -> None:
        self.plan, self.results_dir, self.done, self.enqueued = plan, results_dir, done, enqueued
        self.on_disk, self.running, self.queued = on_disk, running, queued
        self.stopped, self.lost = stopped, lost
        self.requeue_stale_after, self.now = requeue_stale_after, time.time()
        self.task_id = task_id_maker(spec_sha)

    def should_send(self, episode_id: str) -> bool:
        plan, enqueued = self.plan, self.enqueued
        in_done_set = episode_id in self.done
        path = self.on_disk.get(episode_id)
        read = read_record(path, self.results_dir) if path is not None else None
        if read is not None and read.status == OK:
            if read.is_done():
                if not in_done_set:
                    plan.repair_done.append(episode_id)
                plan.skipped[SKIP_DONE_SET if in_done_set else SKIP_RECORD] += 1
                return False
            # An infrastructure-error record: the retries ran out, the episode is not done.
            if in_done_set:
                plan.repair_not_done.append(episode_id)
                in_done_set = False
            if episode_id in enqueued and enqueued[episode_id] <= finished_at(read.record):
                del enqueued[episode_id]  # that message ended in this record; none is out now
        elif read is not None and read.status in DAMAGED and self.ended_in(episode_id, path):
            # Truncated, emptied or unreadable after its message ended (a disk, a hand, a bad
            # copy): the episode is not done; the next delivery keeps the damaged file aside.
            plan.damaged.append(episode_id)
            if in_done_set:
                plan.repair_not_done.append(episode_id)
                in_done_set = False
            enqueued.pop(episode_id, None)
        elif read is None and episode_id in self.lost:  # --reconcile: done, the record lost
            plan.reconciled.append(episode_id)
            plan.repair_not_done.append(episode_id)
            in_done_set = False
            enqueued.pop(episode_id, None)
        if in_done_set:
            plan.skipped[SKIP_DONE_SET] += 1
            return False
        if episode_id in enqueued:
            lost = (self.queued is not None and self.now - enqueued[episode_id] >= self.requeue_stale_after
                    and self.task_id(episode_id) not in self.queued and episode_id not in self.running)
            if not lost:
                plan.skipped[SKIP_ENQUEUED] += 1
                return False
            plan.stale += 1
        elif episode_id in self.running:  # a delivery runs it although nothing says it was enqueued
            plan.skipped[SKIP_ENQUEUED] += 1
            return False
        elif episode_id in self.stopped:
            plan.skipped[SKIP_STOPPED] += 1
            plan.stopped.append(episode_id)
            return False
        if episode_id in enqueued or read is not None:  # a stale message, or a record that is not done
            plan.sent_before.append(episode_id)
        return True

    def ended_in(self, episode_id: str, path: str) -> bool:
        """Whether the file at ``path`` was written after the episode's last message was sent (so
        that message has ended) and no delivery runs the episode now."""
        if episode_id in self.running:
            return False
        try:
            written = os.stat(path).st_mtime
        except OSError:
            return True
        return self.enqueued.get(episode_id, 0.0) <= written


def plan_enqueue(spec: Spec, policies: list[str], results_dir: Path, state: QueueState, *,
                 queue: str, requeue_stale_after: float | None = None, resume_stopped: bool = False,
                 reconciler: Reconciler | None = None, stopped_by_notes: set[str] | None = None) -> EnqueuePlan:
    """``resume_stopped``: send withdrawn episodes too; ``reconciler``: send done episodes whose
    record is lost (``producer/reconcile.py``); ``stopped_by_notes``: episodes that stop notes
    beside the records say were withdrawn, which this Redis forgot (``stop_when.py``)."""
    plan = EnqueuePlan()
    done = state.done(spec.sha256)
    enqueued = state.enqueued(spec.sha256)
    stopped = state.stopped(spec.sha256)
    plan.counter_drift = drift(state.counts(spec.sha256),
                               count_sets(done, enqueued, state.given_up(spec.sha256), stopped))
    queued: set[str] | None = None  # task ids waiting or delivered (only needed for --requeue-stale)
    running = set(state.running())
    if requeue_stale_after is not None:
        queued = state.queued_task_ids(queue)
    # One scan of the results tree instead of a stat per episode.
    on_disk = {os.path.relpath(path, results_dir)[: -len(".json")]: path
               for path in iter_record_paths(results_dir, policies)}
    lost: set[str] = set()
    if reconciler is not None:
        missing = sorted(i for i in done if i not in on_disk and i.split("/", 1)[0] in policies)
        wanted = {key.id for key in iter_episodes(spec, policies)}
        lost = reconciler.lost(spec.sha256, [i for i in missing if i in wanted])
    planner = _Planner(plan, results_dir, spec.sha256, done, enqueued, on_disk, running, queued,
                       requeue_stale_after, set() if resume_stopped else stopped | (stopped_by_notes or set()), lost)
    # Only episodes something is known about need a decision; the others (all of them, the
    # first time) go out as they come.
    known = done | enqueued.keys() | on_disk.keys() | running | planner.stopped
    for policy, ids in in_rounds(spec, policies):
        sending = [i for i in ids if i not in known or planner.should_send(i)] if known else ids
        plan.to_send.extend(sending)
        plan.per_policy[policy] += len(sending)
    plan.per_policy = +plan.per_policy  # policies with nothing to send are not listed
    return plan


def apply_repairs(plan: EnqueuePlan, spec_sha: str, state: QueueState) -> None:
    """Make Redis agree with the records, and give the episodes about to be sent a fresh
    count of attempts (before they are published: a worker may claim one at once)."""
    state.repair_done(spec_sha, plan.repair_done, plan.repair_not_done)
    if plan.counter_drift:  # the sets are the truth: the counters are rebuilt from them
        state.counters.rebuild(spec_sha)
    state.reset_attempts(plan.sent_before)
