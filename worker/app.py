"""The Celery application. Importing this module connects to nothing and imports no torch.

The configuration is built from ``worker.settings.Settings`` when Celery first needs it
(``on_configure``), i.e. when a worker, producer or ``celery -A worker.app flower`` starts;
every reliability setting says why it is set.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

from worker.settings import Settings, active

app = Celery("rtbench", include=["worker.tasks", "worker.sync_task", "worker.verify_task", "worker.seed_task"],
             events="worker.events:BoundedRetryEvents")  # a shutdown never waits on a dead broker


def unacked_mutex_expire_s(settings: Settings) -> int:
    return int(max(5, 3 * settings.unacked_restore_interval_s))


def celery_config(settings: Settings) -> dict[str, Any]:
    transport = {
        # Above the hard time limit: an unacked message is redelivered only when its worker is
        # really gone, never while an episode may still be running.
        "visibility_timeout": int(settings.visibility_timeout_s),
        # kombu restores a dead worker's unacked messages on a periodic sweep; the defaults
        # (10 s x 10) mean ~100 s. One scan per interval keeps recovery within the interval.
        "unacked_restore_interval": settings.unacked_restore_interval_s,
        "unacked_restore_throttle": 1,
        # The sweep runs under a Redis lock that kombu keeps 5 minutes by default: a worker
        # killed (kill -9, OOM) while it holds it would stop every sweep for that long. The
        # sweep takes milliseconds, and restoring a message twice is harmless (kombu restores
        # each one in a transaction), so the lock expires a few intervals after it was taken.
        "unacked_mutex_expire": unacked_mutex_expire_s(settings),
    }
    return {
        "broker_url": settings.broker_url,
        # Celery's consumer, except that a message it cannot run goes to the dead-letter list,
        # and a worker that cannot write records pauses (worker/consumer.py).
        "worker_consumer": "worker.consumer:Consumer",
        "broker_transport_options": transport,
        # Celery reads the visibility timeout here too (result backend on Redis); same value.
        "result_backend_transport_options": dict(transport),
        "broker_connection_retry_on_startup": True,   # Redis may come up after the workers
        "broker_connection_max_retries": None,        # ... or restart: keep trying
        # Records are files; a result backend would only duplicate them.
        "task_ignore_result": True,
        "result_backend": None,
        # Acknowledge after the episode, not before: a worker that dies mid-episode leaves
        # the message to be delivered again.
        "task_acks_late": True,
        # A child killed mid-episode (OOM killer, kill -9) requeues the message at once.
        "task_reject_on_worker_lost": True,
        # ... and so does a child killed at the hard time limit (Celery would acknowledge it:
        # the episode would vanish). The claim counts the attempt.
        "task_acks_on_timeout": False,
        # One episode at a time per worker; no hoarding of messages other GPUs could run.
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": 1,
        # Soft limit: the runner's own deadline fires first and cleans up; hard limit kills a
        # child stuck in native code. Both stay below the visibility timeout.
        "task_soft_time_limit": settings.episode_timeout_s + settings.hard_timeout_margin_s / 2,
        "task_time_limit": settings.hard_time_limit_s,
        # Fresh children now and then: simulators and CUDA leak.
        "worker_max_tasks_per_child": settings.max_tasks_per_child,
        # ... each given the time its imports take on a loaded machine to say it is up.
        "worker_proc_alive_timeout": settings.child_start_timeout_s,
        # Events for Flower: task ids and names, worker heartbeats.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        # Containers stop with SIGTERM, which `python -m worker` maps to Celery's cold shutdown:
        # the episode in flight gets this window to finish, then goes back to the queue at once
        # (its claim released) and runs elsewhere. Idle workers wait too, so that deferred
        # (ETA) messages they hold are restored.
        "worker_soft_shutdown_timeout": settings.shutdown_grace_s,
        "worker_enable_soft_shutdown_on_idle": True,
        "task_default_queue": settings.queues[0],
        "task_serializer": "json",
        "accept_content": ["json"],
        # Deferred deliveries (ETA) must not be dropped because the worker restarted.
        "worker_deduplicate_successful_tasks": False,
        "worker_hijack_root_logger": False,
        # Only the beat embedded in `python -m worker sync` reads this: this machine's sync,
        # on its own queue, every RTBENCH_SYNC_INTERVAL seconds.
        "beat_schedule": {"sync-results": {"task": "rtbench.sync_results", "schedule": settings.sync_interval_s,
                                           "options": {"queue": settings.sync_queue,
                                                       "expires": settings.sync_interval_s}}},
    }


def use_guarded_redis_transport() -> None:
    """redis:// and rediss:// URLs select kombu's Redis transport with one change: an item it
    cannot decode goes to the dead-letter list instead of vanishing (worker/queue/transport.py).
    Registered under kombu's own scheme names, so that URLs, logs and TLS work as with kombu's."""
    TRANSPORT_ALIASES["redis"] = TRANSPORT_ALIASES["rediss"] = "worker.queue.transport:Transport"


@app.on_configure.connect
def _configure(sender: Celery, **_: Any) -> None:
    use_guarded_redis_transport()
    sender.conf.update(celery_config(active()))
