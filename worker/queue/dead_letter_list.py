"""The dead-letter list: messages that can never run, each with its reason, detail and the
message itself (``producer dead`` reads, requeues and purges it). A part of ``QueueState``."""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from typing import Any

import redis

from worker.queue import keys
from worker.queue.counters import Counters
from worker.queue.messages import MalformedMessage, parse_message

RAW_LIMIT = 4096  # characters of an undecodable message kept in its dead letter


class DeadLetterList:
    """Mixed into ``QueueState``: uses its client ``r``, ``counters``, ``publish`` and
    ``reset_attempts``."""

    r: redis.Redis
    counters: Counters

    def dead_letter(self, reason: str, detail: str, *, message: Any, episode_id: str | None, worker: str,
                    traceback: str | None = None) -> None:
        """Park a message that cannot run, with why. Its episode's attempts start again from
        zero if it is requeued after the cause was fixed."""
        with self.r.pipeline(transaction=False) as pipe:
            pipe.rpush(keys.DEAD, dead_letter_entry(reason, detail, message=message, episode_id=episode_id,
                                                    worker=worker, traceback=traceback))
            if episode_id is not None:
                pipe.delete(keys.attempts(episode_id), keys.last_error(episode_id))
            pipe.execute()

    def dead_count(self) -> int:
        return int(self.r.llen(keys.DEAD))

    def requeue_dead_letters(self, queue: str, reasons: Collection[str] = ()) -> tuple[list[dict[str, Any]],
                                                                                      list[dict[str, Any]]]:
        """Publish the dead letters (of ``reasons``, else all) that name an episode again (fixed
        task ids, ``enqueued:`` entries: like ``enqueue``); keep the others (undecodable ones) in
        the list. Returns (requeued, kept)."""
        requeued, kept, messages = [], [], []
        for entry in self.take_dead_letters(reasons):
            message = entry.get("message")
            try:
                if not isinstance(message, dict):
                    raise MalformedMessage("undecodable", "no task arguments")
                messages.append(parse_message(tuple(message.get("args") or ()), message.get("kwargs")))
                requeued.append(entry)
            except MalformedMessage:
                kept.append(entry)
        if kept:
            self.r.rpush(keys.DEAD, *(json.dumps(entry) for entry in kept))
        self.reset_attempts(m.key.id for m in messages)
        self.publish(messages, queue=queue)
        return requeued, kept

    def purge_dead_letters(self, reasons: Collection[str] = ()) -> list[dict[str, Any]]:
        """Delete the dead letters (of ``reasons``, else all). Their episodes, unless a delivery
        runs one now, are withdrawn: no longer counted as enqueued, but as stopped, so that
        status tells and a plain ``enqueue`` does not send them again (``--resume-stopped``)."""
        taken = self.take_dead_letters(reasons)
        by_spec: dict[str, list[str]] = {}
        for entry in taken:
            message = entry.get("message")
            kwargs = message.get("kwargs") if isinstance(message, dict) else None
            if isinstance(kwargs, dict) and isinstance(kwargs.get("spec_sha256"), str) and entry.get("episode_id"):
                by_spec.setdefault(kwargs["spec_sha256"], []).append(entry["episode_id"])
        for spec_sha, ids in by_spec.items():
            with self.r.pipeline(transaction=False) as pipe:
                for episode_id in ids:
                    pipe.exists(keys.claim(episode_id))
                running = pipe.execute()
            ids = [i for i, busy in zip(ids, running, strict=True) if not busy]
            self.counters.withdraw(spec_sha, sorted(set(ids)))
        return taken

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(item) for item in self.r.lrange(keys.DEAD, 0, -1)]

    def take_dead_letters(self, reasons: Collection[str] = ()) -> list[dict[str, Any]]:
        """Remove and return the dead letters of ``reasons`` (all when empty), atomically: a
        letter a worker adds meanwhile is either taken or stays, never lost."""
        if not reasons:
            with self.r.pipeline() as pipe:
                pipe.lrange(keys.DEAD, 0, -1)
                pipe.delete(keys.DEAD)
                items, _ = pipe.execute()
            return [json.loads(item) for item in items]
        taken: list[dict[str, Any]] = []

        def take(pipe: redis.client.Pipeline) -> None:
            items = pipe.lrange(keys.DEAD, 0, -1)  # watched: a concurrent push runs this again
            entries = [json.loads(item) for item in items]
            taken[:] = [entry for entry in entries if entry.get("reason") in reasons]
            kept = [item for item, entry in zip(items, entries, strict=True) if entry.get("reason") not in reasons]
            pipe.multi()
            pipe.delete(keys.DEAD)
            if kept:
                pipe.rpush(keys.DEAD, *kept)

        self.r.transaction(take, keys.DEAD)
        return taken


def dead_letter_entry(reason: str, detail: str, *, message: Any, episode_id: str | None, worker: str,
                      traceback: str | None = None) -> str:
    """One dead letter as stored in the dead-letter list; raw bytes are kept as text, truncated."""
    if isinstance(message, bytes | bytearray):
        message = message.decode("utf-8", errors="replace")
    elif not isinstance(message, str | dict):
        message = json.dumps(message, default=repr)
    if isinstance(message, str) and len(message) > RAW_LIMIT:
        message = message[:RAW_LIMIT] + f"... ({len(message) - RAW_LIMIT} more characters)"
    entry = {"reason": reason, "detail": detail, "episode_id": episode_id, "worker": worker, "time": time.time(),
             "message": message}
    if traceback:
        entry["traceback"] = traceback[-RAW_LIMIT:]
    return json.dumps(entry, default=repr)


