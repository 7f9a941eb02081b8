"""Progress of a spec on the queue, per policy: done, queued, running, dead, rate, ETA."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from benchmark.episodes import iter_episodes
from benchmark.results import episode_done
from benchmark.spec import Spec
from worker.queue.state import QueueState

RATE_WINDOW_S = 600.0


@dataclass
class PolicyStatus:
    policy: str
    expected: int
    done: int
    queued: int
    running: int
    dead: int


@dataclass
class Status:
    spec: Spec
    policies: list[PolicyStatus]
    queue_length: int
    per_minute: float
    blocked: list[dict]  # workers that stopped taking episodes, with why

    @property
    def remaining(self) -> int:
        return sum(p.expected - p.done for p in self.policies)

    @property
    def eta_s(self) -> float | None:
        return self.remaining / self.per_minute * 60 if self.per_minute > 0 else None


def collect_status(spec: Spec, policies: list[str], state: QueueState, results_dir: Path, queue: str) -> Status:
    done_ids = state.done(spec.sha256)
    enqueued = state.enqueued(spec.sha256)
    running = set(state.running())
    dead = Counter((entry.get("episode_id") or "").split("/")[0] for entry in state.dead_letters())
    rows = []
    for policy in policies:
        expected = done = queued = busy = 0
        for key in iter_episodes(spec, policy):
            expected += 1
            if key.id in done_ids or episode_done(key, results_dir):
                done += 1
            elif key.id in running:
                busy += 1
            elif key.id in enqueued:
                queued += 1
        rows.append(PolicyStatus(policy, expected, done, queued, busy, dead[policy]))
    length = state.queue_length(queue)
    rate = state.finished_since(spec.sha256, time.time() - RATE_WINDOW_S) / (RATE_WINDOW_S / 60)
    return Status(spec, rows, length, rate, state.blocked_workers())


def status_table(status: Status) -> Table:
    table = Table(title=f"{status.spec.name} ({status.spec.sha256[:12]}): queue length {status.queue_length}, "
                        f"{status.per_minute:.1f} episodes/min, ETA {_duration(status.eta_s)}")
    for column in ("policy", "done", "expected", "progress", "queued", "running", "dead"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for row in status.policies:
        progress = row.done / row.expected if row.expected else 0.0
        table.add_row(row.policy, f"{row.done:,}", f"{row.expected:,}", f"{_bar(progress)} {progress:6.1%}",
                      f"{row.queued:,}",
                      str(row.running), str(row.dead))
    return with_blocked_caption(table, status.blocked)


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
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(notice.get("since", 0)))
        lines.append(f"BLOCKED {notice.get('machine')} ({notice.get('worker')}): {notice.get('reason')} "
                     f"in {notice.get('path')}, since {since}; it takes episodes again once the folder is writable")
    return lines


def _bar(fraction: float, width: int = 20) -> str:
    filled = round(fraction * width)
    return "█" * filled + "░" * (width - filled)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def known_policies(state: QueueState, spec_sha: str) -> list[str]:
    """Policies with episodes enqueued or done for a spec, from Redis."""
    ids = state.done(spec_sha) | set(state.enqueued(spec_sha))
    return sorted({episode_id.split("/", 1)[0] for episode_id in ids})


def queue_overview(state: QueueState, queue: str) -> Table:
    """The queue as a whole: waiting messages, running episodes, dead letters, done per spec."""
    table = Table(title=f"queue {queue!r}: {state.queue_length(queue):,} waiting, {len(state.running())} running, "
                        f"{state.dead_count()} dead letters")
    with_blocked_caption(table, state.blocked_workers())
    table.add_column("spec sha256")
    table.add_column("done", justify="right")
    table.add_column("enqueued", justify="right")
    for sha, done, enqueued in state.specs_overview():
        table.add_row(sha[:16], f"{done:,}", f"{enqueued:,}")
    return table
