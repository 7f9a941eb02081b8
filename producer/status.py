"""Progress of a spec on the queue, per policy: done, queued, running, dead, rate, ETA."""

from __future__ import annotations

import os
import re
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from rich.table import Table

from benchmark.common.terminal_tables import fill_table, new_table
from benchmark.records.episodes import iter_episodes
from benchmark.records.results import iter_record_paths, read_record
from benchmark.records.time_use import ROW_COLUMNS, TimeUse
from benchmark.spec.spec_file import Spec
from benchmark.spec.summary import SpecSummary, round_slots
from producer.stop_when import stop_lines
from worker.queue import time_sums
from worker.queue.counters import count_sets
from worker.queue.counters import drift as counter_drift
from worker.queue.state import QueueState

RATE_WINDOW_S = 600.0  # the rate is measured on the episodes of the spec that ended this recently


@dataclass
class PolicyStatus:
    policy: str
    expected: int
    done: int
    queued: int
    running: int
    dead: int
    given_up: int = 0  # retries ran out (an infrastructure-error record); the next enqueue resends
    stopped: int = 0   # withdrawn before they ran; sent again only with --resume-stopped
    rounds: int = 0    # completed rounds: the leading repeats done for every (setting, task)
    of_rounds: int = 0


@dataclass
class Status:
    spec: Spec | SpecSummary  # a summary for the whole spec (name, sha256, size), the spec for a slice
    policies: list[PolicyStatus]
    queue_length: int
    per_minute: float | None  # None until two episodes of the spec ended within the window
    blocked: list[dict]  # workers that stopped taking episodes, with why
    drift: list[str] = field(default_factory=list)  # counters that differ from the sets (--verify)
    verified: bool = False  # the numbers were counted from the sets (--verify)
    records_drift: list[str] = field(default_factory=list)  # the done-set against the records (--verify)
    stops: list[str] = field(default_factory=list)  # stop rules set, slices stopped (stop_when.py)

    @property
    def in_flight(self) -> int:
        """Episodes of these policies still queued or running: what the workers will still do."""
        return sum(p.queued + p.running for p in self.policies)

    @property
    def eta_s(self) -> float | None:
        if not self.in_flight:
            return 0.0
        return self.in_flight / self.per_minute * 60 if self.per_minute else None


def recent_rate(finish_times: list[float], now: float) -> float | None:
    """Episodes per minute over the window's finished episodes: from the first of them to now
    (so a burst of 10 in a few seconds reads as fast, and a stalled fleet slows down), None
    with fewer than two."""
    if len(finish_times) < 2:
        return None
    return len(finish_times) / max(now - finish_times[0], 1.0) * 60


def collect_status(spec: Spec | SpecSummary, policies: list[str], state: QueueState, queue: str, *,
                   whole_spec: bool = True, verify: bool = False, results_dir: Path | None = None) -> Status:
    """Per policy: done, queued, running, dead. For a whole spec the counters kept next to the
    sets are read (O(policies)); a slice of the spec, or ``verify``, counts the sets themselves
    (O(episodes)), and ``verify`` also reports where the counters differ from the sets and, given
    ``results_dir``, where the done-set differs from the records there (``Status.drift``)."""
    sha = spec.sha256
    drift: list[str] = []
    records_drift: list[str] = []
    verified = False
    if whole_spec and not verify:
        counts = state.counts(sha)
    else:
        done_ids, enqueued_ids = state.done(sha), state.enqueued(sha).keys()
        given_up, stopped = state.given_up(sha), state.stopped(sha)
        wanted = None if whole_spec else {key.id for key in iter_episodes(spec, policies)}
        if wanted is not None:  # the slice's episodes only
            done_ids, enqueued_ids = done_ids & wanted, wanted.intersection(enqueued_ids)
            given_up, stopped = given_up & wanted, stopped & wanted
        counts = count_sets(done_ids, enqueued_ids, given_up, stopped)
        if verify:
            if whole_spec:
                drift = counter_drift(state.counts(sha), counts, policies)
            if results_dir is not None:
                records_drift = disk_drift({i for i in done_ids if i.split("/", 1)[0] in policies},
                                    done_on_disk(results_dir, policies, wanted))
            verified = True
    running_ids = set(state.running_of(sha, state.running()))
    running = Counter(episode_id.split("/", 1)[0] for episode_id in running_ids)
    # A dead-lettered episode stays in the enqueued hash (a plain enqueue does not send it again
    # before someone fixes the cause): counted dead, not queued. Each episode once, however many
    # letters it has; one that ran since (requeued and done, or running) is not dead.
    dead_ids = dead_episodes(state, sha) - running_ids
    still_enqueued = set(state.running_of(sha, sorted(dead_ids)))  # enqueued and not done
    dead = Counter(episode_id.split("/", 1)[0] for episode_id in dead_ids - state.done_of(sha, dead_ids))
    dead_in_flight = Counter(episode_id.split("/", 1)[0] for episode_id in still_enqueued)
    expected = spec.episodes_per_policy
    pairs, repeats = round_slots(spec)
    rows = []
    for policy in policies:
        in_flight = counts["enqueued"][policy] - counts["enqueued_done"][policy]
        busy = min(running[policy], in_flight)
        queued = max(0, in_flight - busy - dead_in_flight[policy])
        rows.append(PolicyStatus(policy, expected, counts["done"][policy], queued, busy, dead[policy],
                                 counts["given_up"][policy], counts["stopped"][policy],
                                 completed_rounds(state, sha, policy, pairs, repeats, counts["done"][policy]),
                                 repeats))
    length = state.queue_length(queue)
    now = time.time()
    rate = recent_rate(state.finish_times_since(sha, now - RATE_WINDOW_S), now)
    return Status(spec, rows, length, rate, state.blocked_workers(), drift, verified, records_drift,
                  stop_lines(state, sha, policies))


def completed_rounds(state: QueueState, spec_sha: str, policy: str, pairs: list[str], repeats: int,
                     done_count: int) -> int:
    """How many leading rounds (repeat r of every slot) the policy has done. No more rounds can
    be complete than ``done_count`` fills, so only those are asked about (one membership query;
    none at all for a policy with every episode done or not one round's worth)."""
    if not pairs or not repeats:
        return 0
    possible = min(done_count // len(pairs), repeats)
    if possible == repeats:  # every episode done
        return repeats
    ids = [f"{policy}/{pair}/episode_{r}" for r in range(possible) for pair in pairs]
    done = state.done_of(spec_sha, ids)
    for r in range(possible):
        if any(f"{policy}/{pair}/episode_{r}" not in done for pair in pairs):
            return r
    return possible


def done_on_disk(results_dir: Path, policies: list[str], wanted: set[str] | None) -> set[str]:
    """The episodes with a done record in ``results_dir`` (of ``wanted``, when given)."""
    found = set()
    for path in iter_record_paths(results_dir, policies):
        episode_id = os.path.relpath(path, results_dir)[: -len(".json")]
        if (wanted is None or episode_id in wanted) and read_record(path, results_dir).is_done():
            found.add(episode_id)
    return found


def disk_drift(done_set: set[str], on_disk: set[str]) -> list[str]:
    """Where the done-set and the records disagree, in lines of at most 80 columns."""
    lines = []
    if missing := on_disk - done_set:
        lines += textwrap.wrap(f"{len(missing):,} done record(s) here are not in the done-set (a mark lost "
                               f"while Redis was away, or a new Redis): python -m producer enqueue adds them; "
                               f"e.g. {min(missing)}", 80, break_on_hyphens=False)
    if absent := done_set - on_disk:
        lines += textwrap.wrap(f"{len(absent):,} episode(s) in the done-set have no done record here: not "
                               f"synced here yet, or lost (deleted, damaged, a disk: enqueue --reconcile sends them "
                               f"again once their machine pushed); e.g. {min(absent)}", 80,
                               break_on_hyphens=False)
    return lines


def dead_episodes(state: QueueState, spec_sha: str) -> set[str]:
    """The episodes of a spec that have a dead letter (letters naming no episode are not counted)."""
    found = set()
    for entry in state.dead_letters():
        message = entry.get("message")
        kwargs = message.get("kwargs") if isinstance(message, dict) else None
        if isinstance(kwargs, dict) and kwargs.get("spec_sha256") == spec_sha and entry.get("episode_id"):
            found.add(entry["episode_id"])
    return found


def status_table(status: Status) -> Table:
    if status.in_flight == 0:
        pace = "nothing queued or running for it"
    elif status.per_minute is None:
        pace = f"{status.in_flight:,} queued or running, rate not measured yet"
    else:
        pace = (f"{status.in_flight:,} queued or running, {status.per_minute:,.1f} episodes/min, "
                f"ETA {_duration(status.eta_s)}")
    rows = []
    for row in status.policies:
        progress = row.done / row.expected if row.expected else 0.0
        # Completed rounds under the count: a ninth column would not fit 80 columns.
        rows.append([row.policy, f"{row.done:,}/{row.expected:,}\n{row.rounds}/{row.of_rounds} rounds",
                     f"{progress:.1%}", f"{row.queued:,}", f"{row.running:,}", f"{row.dead:,}", f"{row.given_up:,}",
                     f"{row.stopped:,}"])
    table = fill_table(new_table(f"{status.spec.name} ({status.spec.sha256[:12]}): {pace}; queue length "
                                 f"{status.queue_length:,}"),
                       ["policy", "done/expected", "%", "queued", "running", "dead", "given up", "stopped"],
                       rows)
    table = with_blocked_caption(table, status.blocked)
    if status.stops:
        table.caption = "\n".join(filter(None, [table.caption, *status.stops]))
    if status.verified:
        lines = (["counters differ from the sets (python -m producer enqueue repairs them):", *status.drift]
                 if status.drift else ["verified: the counters agree with the sets"])
        lines += (["the done-set and the records here differ:", *status.records_drift] if status.records_drift
                  else ["verified: the done-set agrees with the records here"])
        table.caption = "\n".join(filter(None, [table.caption, *lines]))
    return table


def time_use_table(state: QueueState, spec_sha: str, policies: list[str]) -> Table | None:
    """Where the episodes' time went, per policy and per machine (None before any record with
    phases): the duty cycle (share of wall time in policy calls), the set-up and simulator
    shares, and episodes per GPU-hour (benchmark/records/time_use.py)."""
    by_policy: dict[str, TimeUse] = {}
    by_machine: dict[str, TimeUse] = {}
    for (policy, machine), sums in time_sums.read(state.r, spec_sha).items():
        if policy in policies:
            by_policy.setdefault(policy, TimeUse()).add(sums.sums)
            by_machine.setdefault(machine, TimeUse()).add(sums.sums)
    if not by_policy:
        return None
    rows = [use.row(policy) for policy, use in sorted(by_policy.items())]
    rows += [use.row(f"@{machine}") for machine, use in sorted(by_machine.items(), key=lambda i: _natural(i[0]))]
    return fill_table(new_table("time use: per policy, then per @machine"), ROW_COLUMNS, rows)


def with_blocked_caption(table: Table, blocked: list[dict]) -> Table:
    """The table, captioned in red with the blocked workers when there are any."""
    if blocked:
        table.caption = "\n".join(blocked_lines(blocked))
        table.caption_style = "bold red"
    return table


def blocked_lines(blocked: list[dict]) -> list[str]:
    """One line per blocked worker: machine, worker, why, since when, and what to do."""
    lines = []
    for notice in blocked:
        since = _when(notice.get("since", 0))
        lines.append(f"BLOCKED {notice.get('machine')} ({notice.get('worker')}): {notice.get('reason')} "
                     f"in {notice.get('path')}, since {since}; it takes episodes again once the folder is writable")
    return lines


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def sync_table(state: QueueState) -> Table | None:
    """Each machine's results sync: its last successful cycle (time, commit pushed), the
    records written there and not yet on the remote, its last error and the files it will not
    commit (None when no machine syncs)."""
    statuses = state.sync_statuses()
    if not statuses:
        return None
    rows, errors = [], []
    for machine, fields in statuses.items():
        last_ok = float(fields["last_ok"]) if fields.get("last_ok") else None
        rejected = int(fields.get("rejected") or 0)
        rows.append([machine, _when(last_ok), (fields.get("commit") or "-")[:12], fields.get("pending", "-"),
                     "yes" if fields.get("last_error") or rejected else "-"])
        if fields.get("last_error"):
            failed_at = _when(float(fields.get("error_at") or 0))
            errors.append(f"sync {machine} failed at {failed_at}: {fields['last_error']}")
        if rejected:  # files the sync will not commit until someone fixes or removes them
            errors.append(f"sync {machine}: {rejected} file(s) not committed: {fields.get('rejected_files', '')}")
    table = fill_table(new_table("results sync"), ["machine", "last sync", "commit", "waiting", "error"], rows)
    if errors:
        table.caption = "\n".join(errors)
        table.caption_style = "red"
    return table


def workers_table(state: QueueState, each: bool = False) -> Table | None:
    """The workers running episodes now, from the claims (O(running)): per machine, the busy
    workers by GPU and slot (``gpu3.1``); ``each``: one row per worker with its episode."""
    running = state.running_workers()
    if not running:
        return None
    by_machine: dict[str, list[tuple[str, str]]] = {}
    for episode_id, worker in running.items():
        name, _, machine = worker.rpartition("@")
        by_machine.setdefault(machine, []).append((name or worker, episode_id))
    rows = []
    for machine, busy in sorted(by_machine.items()):
        busy.sort(key=lambda item: _natural(item[0]))
        if each:
            rows += [[machine, name, episode_id] for name, episode_id in busy]
        else:
            rows.append([machine, str(len(busy)), " ".join(name for name, _ in busy)])
    columns = ["machine", "worker", "episode"] if each else ["machine", "running", "workers (gpu.slot)"]
    return fill_table(new_table(f"running: {len(running):,} episode(s) on {len(by_machine)} machine(s)"), columns,
                      rows)


def _natural(name: str) -> list:
    """gpu2.1 before gpu10.0: numbers compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) if epoch else "never"


def known_policies(state: QueueState, spec_sha: str) -> list[str]:
    """Policies with episodes enqueued, done, given up or stopped for a spec, from the counters."""
    counts = state.counts(spec_sha)
    return sorted({policy for field in ("enqueued", "done", "given_up", "stopped") for policy in counts[field]})


def queue_overview(state: QueueState, queue: str) -> Table:
    """The queue as a whole: waiting messages, running episodes, dead letters, done per spec."""
    table = new_table(f"queue {queue!r}: {state.queue_length(queue):,} waiting, {len(state.running())} running, "
                      f"{state.dead_count()} dead letters")
    rows = [[sha[:16], f"{done:,}", f"{enqueued:,}"] for sha, done, enqueued in state.specs_overview()]
    return with_blocked_caption(fill_table(table, ["spec sha256", "done", "enqueued"], rows), state.blocked_workers())
