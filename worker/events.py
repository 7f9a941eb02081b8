"""Celery's event dispatcher with a bound on its retries.

Celery sends the worker's heartbeats and its last ``worker-offline`` event with ``retry=True``
and no retry policy, which kombu reads as "retry the broker forever": a worker whose Redis
is gone (the embedded one killed with ``producer run``, a hub down during ``docker stop``)
never finishes its shutdown. Here such a send tries for a few seconds and then gives up;
Celery's dispatcher keeps the event in its offline buffer, and Flower notices the silence
at its heartbeat timeout. A send with its own retry policy keeps it.
"""

from __future__ import annotations

from celery.app.events import Events
from celery.events.dispatcher import EventDispatcher

# kombu's Connection.ensure: at most ~3 s of reconnecting for one event.
EVENT_RETRY_POLICY = {"max_retries": 3, "interval_start": 0.5, "interval_step": 0.5, "interval_max": 1.0}


class BoundedRetryDispatcher(EventDispatcher):
    def send(self, type, blind=False, *, retry=False, retry_policy=None, **fields):
        if retry and retry_policy is None:
            retry_policy = EVENT_RETRY_POLICY
        return super().send(type, blind=blind, retry=retry, retry_policy=retry_policy, **fields)


class BoundedRetryEvents(Events):
    dispatcher_cls = "worker.events:BoundedRetryDispatcher"
