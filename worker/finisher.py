"""Written records made durable (directory fsync), then marked finished in Redis, off the
episode's critical path."""

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
    """

    def __init__(self, state: QueueState) -> None:
        self._state = state
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def submit(self, directory: Path, spec_sha: str, episode_id: str, owner: str, *, done: bool,
               time_use: tuple | None = None) -> None:
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
            directory, spec_sha, episode_id, owner, done, time_use = self._queue.get()
            try:
                fsync_directory(directory)
                self._state.mark_finished(spec_sha, episode_id, owner, done=done, time_use=time_use)
            except Exception:
                # The record is on disk (the source of truth): the next enqueue repairs the
                # done-set from it, and a re-delivery finds it and skips.
                log.exception("could not mark %s finished; the next enqueue repairs it from its record", episode_id)
            finally:
                self._queue.task_done()
