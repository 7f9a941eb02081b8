"""The worker's message consumer (main process): every message either reaches a task or is
stored as a dead letter, and a worker that cannot write records stops taking episodes.

- **Envelopes Celery cannot run** (no task header, a task name this worker does not know, a
  content type other than JSON, a body that is not ``[args, kwargs, embed]``) are stored in
  the dead-letter list with the raw message and acknowledged; Celery itself would log and drop them,
  or fail them in the pool child, where the message is acknowledged without a trace.
- **Pause and resume.** A child that cannot write a record (disk full, read-only or
  permission-denied results folder) leaves a notice in Redis (``keys.blocked(worker)``) and
  sends its message back. Before handing a message to the pool this consumer looks for the
  notice (after a child sent a message back, and at least every ``NOTICE_LOOK_S``; the child
  looks on every delivery, in its claim): if there is one, the message goes back too and the
  worker stops consuming, then probes the folder every ``RTBENCH_BLOCKED_PROBE_INTERVAL``
  seconds and resumes when a record-sized file can be written there again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.request import Request

from worker.queue.state import QueueState, connect
from worker.settings import active

log = logging.getLogger(__name__)

PROBE_BYTES = 256 * 1024  # larger than any record: a probe that fits means a record fits
# How often the consumer looks for a "blocked" notice by itself: a Redis round
# trip per message was ~5% of a zero-cost delivery. A child that finds the
# notice sends its message back (uncounted), which makes the consumer look
# before the next message (``EpisodeRequest``).
NOTICE_LOOK_S = 1.0
_look_now = True  # a child sent a message back or failed: look now


def probe_writable(directory: Path) -> str | None:
    """Write, fsync and remove a record-sized file in ``directory``; None when that worked,
    else why not."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=directory, prefix=".rtbench-probe-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(b"\0" * PROBE_BYTES)
                out.flush()
                os.fsync(out.fileno())
        finally:
            os.unlink(name)
    except OSError as exc:
        return f"{exc.strerror or exc} ({directory})"
    return None


def envelope_problem(message: Any, tasks: Any) -> tuple[str, str] | None:
    """(reason, detail) when Celery could not run this message, else None."""
    headers = message.headers
    if not isinstance(headers, dict) or "task" not in headers:
        return "unknown_message_format", "no 'task' header (not a Celery task message, protocol 2)"
    if headers["task"] not in tasks:
        return "unregistered_task", f"task {headers['task']!r} is not registered in this worker"
    if message.content_type != "application/json":
        return "unsupported_content_type", f"content type {message.content_type!r}; expected application/json"
    try:
        body = json.loads(message.body)
    except (TypeError, ValueError) as exc:
        return "undecodable_body", f"the body is not JSON ({exc})"
    if not (isinstance(body, list) and len(body) == 3 and isinstance(body[0], list) and isinstance(body[1], dict)
            and (body[2] is None or isinstance(body[2], dict))):
        return "undecodable_body", "the body is not [args, kwargs, embed]"
    return None


def raw_message(message: Any) -> str:
    raw = getattr(message, "_raw", None)
    if isinstance(raw, dict):
        return json.dumps(raw, default=repr)
    return repr(message.body)


class EpisodeRequest(Request):
    """A delivery as the worker's main process sees it: a failure or a message
    sent back (a blocked child raises ``Reject``) makes the consumer look for
    the notice at once."""

    def on_failure(self, exc_info: Any, *args: Any, **kwargs: Any) -> Any:
        global _look_now
        _look_now = True
        return super().on_failure(exc_info, *args, **kwargs)


class Consumer(CeleryConsumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rtbench = active()
        self._state: QueueState | None = None
        self._paused_queues: list[str] = []
        self._probe_entry: Any = None
        self._looked_at = -math.inf  # the last look for the notice (monotonic)

    @property
    def queue_state(self) -> QueueState:
        if self._state is None:
            self._state = QueueState(connect(self.rtbench.broker_url))
        return self._state

    def create_task_handler(self, *args: Any, **kwargs: Any):
        on_task_received = super().create_task_handler(*args, **kwargs)

        def on_message(message: Any) -> None:
            problem = envelope_problem(message, self.app.tasks)
            if problem is not None:
                return self._dead_letter(message, *problem)
            if self._paused_queues or self._blocked_notice() is not None:
                return self._send_back(message)
            return on_task_received(message)

        return on_message

    # ---------------------------------------------------------------- dead letters
    def _dead_letter(self, message: Any, reason: str, detail: str) -> None:
        try:
            self.queue_state.dead_letter(reason, detail, message=raw_message(message), episode_id=None,
                                         worker=self.hostname)
        except redis.RedisError as exc:
            log.error("could not store a dead letter (%s: %s): %s; the message goes back to the queue",
                      reason, detail, exc)
            return self._send_back(message)
        log.error("dead letter (%s): %s", reason, detail)
        message.ack()

    def _send_back(self, message: Any) -> None:
        try:
            message.reject(requeue=True)
        except Exception:
            log.exception("could not send a message back to the queue; its visibility timeout will")

    # ---------------------------------------------------------------- pause and resume
    def _blocked_notice(self) -> dict[str, Any] | None:
        """The notice a child left; a stale one (folder writable now) is removed."""
        global _look_now
        now = time.monotonic()
        if not _look_now and now - self._looked_at < NOTICE_LOOK_S:
            return None
        # Cleared before the look: a Reject meanwhile makes the next one look.
        _look_now, self._looked_at = False, now
        try:
            notice = self.queue_state.worker_block(self.hostname)
        except redis.RedisError:
            _look_now = True
            return None  # the broker hiccups: the delivery itself will notice
        if notice is None:
            return None
        if probe_writable(Path(notice["path"])) is None:
            self._resume()
            return None
        self._pause(notice)
        return notice

    def _pause(self, notice: dict[str, Any]) -> None:
        if self._paused_queues:
            return
        self._paused_queues = list(self.app.amqp.queues.consume_from)
        for queue in self._paused_queues:
            self.cancel_task_queue(queue)
        self._probe_entry = self.timer.call_repeatedly(self.rtbench.blocked_probe_s, self._probe)
        log.error("%s stopped taking episodes: %s (%s); the message went back to the queue; probing every %.0f s",
                  self.hostname, notice["reason"], notice["path"], self.rtbench.blocked_probe_s)

    def _probe(self) -> None:
        try:
            notice = self.queue_state.worker_block(self.hostname)
            path = Path(notice["path"]) if notice else self.rtbench.results_dir
            problem = probe_writable(path)
            if problem is None:
                self._resume()
            elif notice is not None:
                self.queue_state.renew_block(self.hostname, self.rtbench.block_ttl_s)
            else:  # the notice expired (Redis restarted): keep saying why
                self.queue_state.block_worker(self.hostname, machine=self.rtbench.machine,
                                              reason=f"results folder not writable: {problem}", path=str(path),
                                              ttl_s=self.rtbench.block_ttl_s)
        except redis.RedisError as exc:
            log.warning("probe of the results folder: broker error (%s); trying again", exc)

    def _resume(self) -> None:
        self.queue_state.unblock_worker(self.hostname)
        if self._probe_entry is not None:
            self.timer.cancel(self._probe_entry)
            self._probe_entry = None
        if not self._paused_queues:
            return
        queues, self._paused_queues = self._paused_queues, []
        for queue in queues:
            self.add_task_queue(queue)
        log.warning("%s: the results folder is writable again; taking episodes", self.hostname)
