"""Written records made durable (their fsyncs), then marked finished in Redis, off the
episode's critical path (``worker.delivery`` submits each record it wrote); stop rules are
checked after the marks (``worker.stop_check``)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

from benchmark.common.atomic import make_durable
from worker.queue.state import QueueState
from worker.stop_check import StopCheck

log = logging.getLogger(__name__)


class Finisher:
    """Makes written records durable (the file's fsync, then its folder's), then marks them
    finished in Redis.

    One background thread per process keeps the fsyncs (~1 ms) off the episode's critical path;
    the done-set never names an episode whose record could still vanish or be empty after a
    crash of the machine. Between the record's rename and its mark, a crash of the process loses
    nothing (the page cache holds the file); a crash of the machine can leave the record missing
    or empty and the episode unmarked, with its message acknowledged: enqueue's planner does not
    count such a record as done and ``enqueue --requeue-stale`` sends the episode again.
    ``flush`` runs when a worker child exits.

    The thread finishes whatever queued up while it was busy together: one fsync per file and
    per folder (the records of one task share theirs), then one Redis round trip. It starts at
    once, without waiting for more: a child killed right after a record (the next episode's
    doing) must still have marked it.
    """

    def __init__(self, state: QueueState, stop_check: StopCheck | None = None) -> None:
        self._state, self._stop_check = state, stop_check
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def submit(self, path: Path, spec_sha: str, episode_id: str, owner: str, *, done: bool,
               time_use: tuple | None = None, outcome: str | None = None) -> None:
        """``time_use``: (machine, the record's ``time_use.SUMS``), None for a record without phases;
        ``outcome``: what stop rules count (``stop_notes.outcome_code``), None for nothing."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="rtbench-finisher", daemon=True)
            self._thread.start()
        self._queue.put((path, spec_sha, episode_id, owner, done, time_use, outcome))

    def flush(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                if durable := self._made_durable(batch):
                    noted = self._state.mark_finished([item[1:] for item in durable])
                    self._check_stop_rules(noted)
            except Exception:
                # The records are on disk (the source of truth): the next enqueue repairs the
                # done-set from them, and a re-delivery finds them and skips.
                log.exception("could not mark %s finished; the next enqueue repairs it from its record",
                              ", ".join(item[2] for item in batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    def _check_stop_rules(self, noted: dict[str, dict[str, int]]) -> None:
        """After the marks (which noted the outcomes of policies with a stop rule, in the same
        script: a kill cannot keep one and lose the other)."""
        if self._stop_check is None:
            return
        try:
            self._stop_check.check_due(noted)
        except Exception:
            # The records are marked; the next records check again.
            log.exception("could not check the stop rules; the next records check again")

    @staticmethod
    def _made_durable(batch: list[tuple]) -> list[tuple]:
        """The items whose records are now durable. Each record was renamed before its submit."""
        failed = make_durable(item[0] for item in batch)
        for path, exc in failed.items():
            # Unmarked, as a crash could still empty it; its message is acknowledged, so the
            # next enqueue decides from the file as it reads then.
            log.error("record %s could not be made durable (%s); not marked finished: the next "
                      "enqueue decides from the file", path, exc.strerror or exc)
        return [item for item in batch if str(item[0]) not in failed]
