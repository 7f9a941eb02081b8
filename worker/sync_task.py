"""The periodic results sync: ``rtbench.sync_results`` on this machine's queue ``sync.<machine>``,
scheduled by the beat embedded in ``python -m worker sync`` (and run once more when it stops).

Around each ``worker.sync`` cycle: the fleet's push budget (Redis), the machine's sync status
for ``producer status`` (last success, commit, records waiting, last error), and the records
other machines pushed, which join the done-set so that ``enqueue`` and ``status`` see the
fleet's work. One log line per cycle, success or failure.
"""

from __future__ import annotations

import logging
import random
import time

import redis

from benchmark.results import read_record
from benchmark.sync_journal import journal_path
from worker.app import app
from worker.queue.state import QueueState, connect
from worker.settings import Settings, active
from worker.sync import CycleResult, SyncBusy, SyncError, SyncTarget, run_cycle

log = logging.getLogger(__name__)
TASK_SYNC_RESULTS = "rtbench.sync_results"


@app.task(name=TASK_SYNC_RESULTS, ignore_result=True)
def sync_results(jitter: bool = True) -> str:
    settings = active()
    if jitter:  # machines started together do not push together
        time.sleep(random.uniform(0, min(30.0, settings.sync_interval_s / 10)))
    try:
        result = sync_once(settings)
    except SyncBusy as busy:
        log.info("%s; this cycle is skipped", busy)
        return "busy"
    except SyncError:
        return "failed"  # logged and noted in Redis by sync_once; the next cycle tries again
    return result.line()


def sync_once(settings: Settings, *, scan: bool = False, wait_s: float = 0.0) -> CycleResult:
    """One cycle with its bookkeeping; a failure is logged (one line), noted in Redis and raised
    as ``SyncError`` (an OS error, e.g. an unwritable ``.rtbench/``, too)."""
    state = QueueState(connect(settings.broker_url))
    machine = settings.machine
    try:
        target = SyncTarget.find(settings.results_dir, machine, settings.sync_paths)
        result = run_cycle(target, scan=scan, wait_s=wait_s,
                           push_allowed=lambda: _push_slot(state, settings.sync_pushes_per_minute))
    except SyncBusy:
        raise
    except (SyncError, OSError) as exc:
        error = exc if isinstance(exc, SyncError) else SyncError(f"{type(exc).__name__}: {exc}")
        log.error("sync %s failed: %s", machine, error)
        _note(state, machine, last_error=str(error), error_at=time.time(), pending=_pending(settings))
        raise error from None
    done = _mark_pulled_done(target, result.pulled, state)
    log.info("%s%s", result.line(), f"; {done} pulled record(s) joined the done-set" if done else "")
    fields = {"last_run": time.time(), "pending": _pending(settings), "last_error": "", "committed": result.committed}
    if result.pushed or result.head:
        fields.update(last_ok=time.time(), commit=result.head or "")
    _note(state, machine, **fields)
    return result


def _push_slot(state: QueueState, per_minute: int) -> bool:
    try:
        return state.take_push_slot(per_minute)
    except redis.RedisError as exc:  # no budget to ask: one machine pushing is within any budget
        log.warning("push budget unknown (%s); pushing", exc)
        return True


def _note(state: QueueState, machine: str, **fields: str | int | float) -> None:
    try:
        state.note_sync(machine, **fields)
    except redis.RedisError as exc:
        log.warning("could not note the sync status of %s in Redis (%s)", machine, exc)


def _pending(settings: Settings) -> int:
    """Records written since the last cycle took the journal."""
    try:
        with open(journal_path(settings.results_dir), "rb") as journal:
            return sum(1 for _ in journal)
    except FileNotFoundError:
        return 0


def _mark_pulled_done(target: SyncTarget, pulled: list[str], state: QueueState) -> int:
    """Records other machines pushed join the done-set of their spec (by the one done rule)."""
    by_spec: dict[str, list[str]] = {}
    for path in pulled:
        read = read_record(target.repo / path, target.results_dir)
        spec = read.record.get("spec") if read.record else None
        if read.is_done() and isinstance(spec, dict) and isinstance(spec.get("sha256"), str):
            episode_id = (target.repo / path).relative_to(target.results_dir).with_suffix("").as_posix()
            by_spec.setdefault(spec["sha256"], []).append(episode_id)
    try:
        for sha, ids in by_spec.items():
            state.repair_done(sha, ids, ())
    except redis.RedisError as exc:
        log.warning("could not add pulled records to the done-set (%s); the next enqueue repairs it", exc)
        return 0
    return sum(len(ids) for ids in by_spec.values())
