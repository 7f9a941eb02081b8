"""Written records made durable (directory fsync), then marked finished in Redis, off the
episode's critical path (``worker.delivery`` submits each record it wrote)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

from benchmark.common.atomic import fsync_directory
from worker.queue.state import QueueState

log = logging.getLogger(__name__)


class Finisher:
    """Makes written records durable (directory fsync), then marks them done in Redis.

    One background thread per process keeps the fsync off the episode's critical path; the
    done-set never names an episode whose record could still vanish in a crash. ``flush``
    runs when a worker child exits.

    The thread finishes whatever queued up while it was busy together: one fsync per folder
    (the records of one task share theirs), then one Redis round trip. It starts at once,
    without waiting for more: a child killed right after a record (the next episode's doing)
    must still have marked it.
    """

    def __init__(self, state: QueueState) -> None:
        self._state = state
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def submit(self, directory: Path, spec_sha: str, episode_id: str, owner: str, *, done: bool,
               time_use: tuple | None = None) -> None:
        """``time_use``: (machine, the record's ``time_use.SUMS``), None for a record without phases."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="rtbench-finisher", daemon=True)
            self._thread.start()
        self._queue.put((directory, spec_sha, episode_id, owner, done, time_use))

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
                # Each record was renamed before its submit: before this fsync.
                for directory in dict.fromkeys(item[0] for item in batch):
                    fsync_directory(directory)
                self._state.mark_finished([item[1:] for item in batch])
            except Exception:
                # The records are on disk (the source of truth): the next enqueue repairs the
                # done-set from them, and a re-delivery finds them and skips.
                log.exception("could not mark %s finished; the next enqueue repairs it from its record",
                              ", ".join(item[2] for item in batch))
            finally:
                for _ in batch:
                    self._queue.task_done()
