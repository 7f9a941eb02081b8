"""Bulk publishing of episode messages: Celery task messages pushed with one Redis pipeline.

``apply_async`` costs a round trip per message (~2,300/s here) and kombu's batch ~7,000/s;
50,000 episodes must enqueue in seconds, so this module writes the exact message a Celery
producer would (task protocol 2, JSON body, kombu's Redis envelope) and pushes them in
pipelined chunks. ``tests/integration/test_queue.py`` proves real workers consume them.

The task id is a UUID5 of (spec sha256, episode id): the same work always has the same id,
which is what Flower shows and what makes re-publishing recognisable.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterable, Sequence

import redis

from worker.queue import keys
from worker.queue.counters import Counters
from worker.queue.messages import TASK_RUN_EPISODE, EpisodeMessage, task_id

CHUNK = 5000
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def _as_json_string(text: str) -> str:
    """``text`` escaped to sit inside a JSON string (without the quotes)."""
    return json.dumps(text)[1:-1]


_BODY_HEAD = _as_json_string('[[], {"episode_id": "')


class MessageBuilder:
    """Builds the kombu/Celery envelope of an ``rtbench.run_episode`` message.

    The envelope is a JSON template filled per message (``json.dumps`` of a nested dict per
    message would cost most of the enqueue time); the result is the same JSON a Celery
    producer sends, byte for byte in the body (checked against Celery by the tests).
    """

    def __init__(self, queue: str, priority: int = 0, task: str = TASK_RUN_EPISODE) -> None:
        self.queue, self.priority = queue, priority
        self.origin = f"producer{os.getpid()}@{socket.gethostname()}"
        self._tag_prefix = uuid.uuid4().hex
        self._sequence = 0
        self._spec_parts: dict[tuple[str, str], tuple[str, str]] = {}
        markers = {"body": "@@BODY@@", "tid": "@@TID@@", "kwargsrepr": "@@KWARGSREPR@@", "tag": "@@TAG@@"}
        skeleton = json.dumps({
            "body": markers["body"],
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                "lang": "py", "task": task, "id": markers["tid"], "shadow": None, "eta": None,
                "expires": None, "group": None, "group_index": None, "retries": 0, "timelimit": [None, None],
                "root_id": markers["tid"], "parent_id": None, "argsrepr": "()", "kwargsrepr": markers["kwargsrepr"],
                "origin": self.origin, "ignore_result": True, "replaced_task_nesting": 0, "stamped_headers": None,
                "stamps": {},
            },
            "properties": {
                "correlation_id": markers["tid"], "reply_to": str(uuid.uuid4()), "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue}, "priority": priority,
                # The body travels as text: kombu decodes only non-utf-8 encodings, so this skips a
                # base64 pass per message (time here, 25% of the body's bytes in Redis).
                "body_encoding": "utf-8", "delivery_tag": markers["tag"],
            },
        })
        self._template = skeleton.replace("{", "{{").replace("}", "}}")
        for name, marker in markers.items():
            self._template = self._template.replace(f'"{marker}"', "{" + name + "}")

    def envelope(self, message: EpisodeMessage) -> str:
        """``envelope_for(message.kwargs, ...)``, with the spec's parts of the body prebuilt.

        Episode ids are validated names (letters, digits, ``_.-/``): they need no escaping in
        JSON or in a Python repr, so they are spliced in as they are.
        """
        parts = self._spec_parts.get((message.spec_ref, message.spec_sha256))
        if parts is None:
            tail = (f'", "spec": {json.dumps(message.spec_ref)}, "spec_sha256": {json.dumps(message.spec_sha256)}}}, '
                    f"{json.dumps(_EMBED)}]")
            parts = self._spec_parts[(message.spec_ref, message.spec_sha256)] = (
                _as_json_string(tail),
                f"', 'spec': {message.spec_ref!r}, 'spec_sha256': {message.spec_sha256!r}}}",
            )
        episode_id = message.key.id
        self._sequence += 1
        return self._template.format(body=f'"{_BODY_HEAD}{episode_id}{parts[0]}"',
                                     tid=f'"{task_id(message.spec_sha256, episode_id)}"',
                                     kwargsrepr=json.dumps("{'episode_id': '" + episode_id + parts[1]),
                                     tag=f'"{self._tag_prefix}-{self._sequence}"')

    def envelope_for(self, kwargs: dict, tid: str) -> str:
        """The envelope of a task message with these keyword arguments (tests send bad ones)."""
        self._sequence += 1
        return self._template.format(body=json.dumps(json.dumps([[], kwargs, _EMBED])), tid=json.dumps(tid),
                                     kwargsrepr=json.dumps(repr(kwargs)),
                                     tag=f'"{self._tag_prefix}-{self._sequence}"')


def publish(client: redis.Redis, messages: Sequence[EpisodeMessage], *, queue: str, priority: int = 0) -> int:
    """Push ``messages`` in order (the first is consumed first); notes them as enqueued.

    The only way rtbench puts an episode on the queue: the task id is the episode's fixed one
    and the ``enqueued:`` entry is written with it, so that ``enqueue`` recognises the message.
    """
    builder = MessageBuilder(queue, priority)
    counters = Counters(client)
    key = keys.queue_key(queue, priority)
    now = time.time()
    sent = 0
    for chunk in _chunks(messages, CHUNK):
        envelopes = [builder.envelope(m) for m in chunk]
        with client.pipeline(transaction=False) as pipe:
            # kombu pops from the right (BRPOP): LPUSH in order keeps first-in first-out.
            pipe.lpush(key, *envelopes)
            by_spec: dict[str, list[str]] = {}
            for m in chunk:
                by_spec.setdefault(m.spec_sha256, []).append(m.key.id)
            for sha, ids in by_spec.items():  # the enqueued entries and their counters, together
                counters.add_enqueued(sha, ids, now, client=pipe)
            pipe.execute()
        sent += len(chunk)
    return sent


def publish_tasks(client: redis.Redis, task: str, items: Sequence[tuple[dict, str]], *, queue: str) -> int:
    """Push task messages of another kind (e.g. verification units): (keyword arguments, task id)
    each, in order; a few hundred, so one envelope at a time is fine."""
    builder = MessageBuilder(queue, task=task)
    for chunk in _chunks(items, CHUNK):
        client.lpush(keys.queue_key(queue, 0), *(builder.envelope_for(kwargs, tid) for kwargs, tid in chunk))
    return len(items)


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def queued_task_id(raw: str | bytes) -> str:
    """The task id of a message waiting in a queue list."""
    return json.loads(raw)["headers"]["id"]


def unacked_task_id(raw: str | bytes) -> str:
    """The task id of an entry of kombu's ``unacked`` hash: [message, exchange, routing key]."""
    return json.loads(raw)[0]["headers"]["id"]
