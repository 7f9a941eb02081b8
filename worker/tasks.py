"""Celery tasks: thin wrappers over ``worker.delivery`` (the logic lives there, testable).

The task maps a delivery's outcome onto the message: returned -> acknowledged (a record
exists or the message is a dead letter); ``Defer``/``Retry`` -> re-published with a delay;
``Blocked`` or a Redis error -> rejected back to the queue. If re-publishing fails, the
original message goes back to the queue instead of being dropped.
"""

from __future__ import annotations

import logging
import time
import traceback

import redis
from celery import Task
from celery.exceptions import Reject, TimeLimitExceeded
from celery.signals import (
    celeryd_after_setup,
    task_failure,
    worker_process_init,
    worker_process_shutdown,
)

from worker.app import app
from worker.delivery import Blocked, ChildContext, Defer, Retry, deliver
from worker.queue.messages import TASK_RUN_EPISODE
from worker.queue.state import QueueState, connect
from worker.settings import Settings, active

log = logging.getLogger(__name__)
_context: ChildContext | None = None
_worker_name = ""  # this worker's Celery hostname (main process), e.g. gpu3@machine-b
BROKER_TROUBLE_PAUSE_S = 2.0  # before a message goes back to the queue for a Redis error


def prepare_child_context(settings: Settings) -> None:
    """In the worker's main process, before the pool forks: the context every child inherits,
    with ``settings.preload_specs`` loaded (it starts no connection, thread or CUDA)."""
    global _context
    _context = ChildContext(settings)
    _context.preload_specs(settings.preload_specs)


def child_context() -> ChildContext:
    """This process's context: inherited from the main process, or built on first use."""
    global _context
    if _context is None:
        _context = ChildContext(active())
    return _context


# EpisodeRequest: a message sent back makes the consumer look for a "blocked"
# notice before the next one.
@app.task(bind=True, name=TASK_RUN_EPISODE, max_retries=None, acks_late=True,
          reject_on_worker_lost=True, Request="worker.consumer:EpisodeRequest")
def run_episode(self: Task, *args, **kwargs) -> str:
    episode = kwargs.get("episode_id")
    try:
        return deliver(child_context(), args, kwargs, hostname=self.request.hostname or "unknown",
                       delivery_id=self.request.id or "")
    except Defer as defer:
        log.info("%s: %s; looking again in %.0f s", episode, defer, defer.delay)
        redeliver(self, defer.delay)
    except Retry as retry:
        log.warning("%s: %s; retrying in %.0f s", episode, retry.cause, retry.delay)
        redeliver(self, retry.delay)
    except Blocked as blocked:
        raise Reject(f"worker blocked: {blocked}", requeue=True) from None
    except redis.RedisError as exc:
        # The broker is unreachable or failing: nothing can be recorded about this delivery,
        # so the message goes back (if the broker is gone too, its visibility timeout does it).
        log.warning("%s: broker error (%s); the message goes back to the queue", episode, exc)
        time.sleep(BROKER_TROUBLE_PAUSE_S)
        raise Reject(f"broker error: {exc}", requeue=True) from None
    except Exception as exc:
        # deliver() handles its own failures; this is one around it (the child's context could
        # not be built). Celery would acknowledge the message: keep it as a dead letter instead.
        return _dead_letter_outside_delivery(self, args, kwargs, exc)
    raise AssertionError("unreachable")  # redeliver always raises


def _dead_letter_outside_delivery(task: Task, args: tuple, kwargs: dict, exc: Exception) -> str:
    episode = kwargs.get("episode_id")
    log.exception("delivery of %s failed outside its handler", episode)
    try:
        QueueState(connect(task.app.conf.broker_url)).dead_letter(
            "delivery_failed", f"{type(exc).__name__}: {exc}", message={"args": args, "kwargs": kwargs},
            episode_id=episode if isinstance(episode, str) else None, worker=task.request.hostname or "unknown",
            traceback=traceback.format_exc())
    except Exception:
        raise Reject("could not store the dead letter; back to the queue", requeue=True) from None
    return "dead"


def dead_letter(context: ChildContext, kind: str, kwargs: dict, hostname: str, reason: str, detail: str,
                trace: str | None = None) -> str:
    """A unit-like message (a verify unit, a seed pick) that cannot run goes to the dead-letter
    list with its reason; when Redis cannot keep it, the message goes back instead (never lost)."""
    log.warning("%s dead letter (%s): %s", kind, reason, detail)
    try:
        context.state.dead_letter(reason, detail, message={"args": [], "kwargs": kwargs}, episode_id=None,
                                  worker=hostname, traceback=trace)
    except redis.RedisError as exc:
        raise Reject(f"could not store the dead letter ({exc}); back to the queue", requeue=True) from None
    return "dead"


def redeliver(task: Task, countdown: float) -> None:
    """Re-publish this delivery after ``countdown`` s (raises Celery's Retry, which acknowledges
    this copy). Celery turns a failed re-publish into a Reject without requeue, which would drop
    the message: requeue this copy instead."""
    try:
        raise task.retry(countdown=countdown, max_retries=None)
    except Reject as failed:
        raise Reject(f"could not re-publish ({failed.reason}); back to the queue", requeue=True) from None


@worker_process_init.connect
def _warm_up_child(**_: object) -> None:
    """Connect and import the backend (torch, a simulator) when the child starts, not on its
    first episode: a fresh child is ready before a message waits for it. No CUDA yet."""
    from benchmark.backends import backend_class

    context = child_context()
    backend_class(context.settings.backend)


@celeryd_after_setup.connect
def _remember_worker_name(sender: str, **_: object) -> None:
    global _worker_name
    _worker_name = sender


@task_failure.connect
def _note_hard_time_limit(sender: object, task_id: str, exception: BaseException, kwargs: dict | None = None,
                          **_: object) -> None:
    """In the worker's main process: the child running ``task_id`` was killed at the hard time
    limit. The message goes back to the queue (task_acks_on_timeout=False); the next delivery
    should know why this attempt ended, and need not wait for the dead child's claim to expire."""
    episode = (kwargs or {}).get("episode_id")
    if (getattr(sender, "name", None) != TASK_RUN_EPISODE or not isinstance(exception, TimeLimitExceeded)
            or not isinstance(episode, str)):
        return
    settings = active()
    try:
        QueueState(connect(settings.broker_url)).release_killed(
            episode, _worker_name, task_id,
            f"timeout: killed at the hard time limit ({settings.hard_time_limit_s:.0f} s)")
    except redis.RedisError as exc:
        log.warning("%s: could not note its hard time limit (%s)", episode, exc)


@worker_process_shutdown.connect
def _finish_pending_records(**_: object) -> None:
    """A recycled or stopping child first marks its last durable records done."""
    if _context is not None:
        _context.finisher.flush()
