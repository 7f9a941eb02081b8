"""Bulk publishing of episode messages: Celery task messages pushed with pipelined chunks.

``apply_async`` costs a round trip per message (~2,300/s here) and kombu's batch ~7,000/s;
1,000,000 episodes must enqueue in seconds, so this module writes the exact message a Celery
producer would (task protocol 2, JSON body, kombu's Redis envelope) from a template and pushes
them in pipelined chunks, one chunk on the wire while the next one is built: Redis stores
chunk k while Python builds chunk k+1 (the two run on different cores).
``tests/integration/test_queue.py`` proves real workers consume them and that they equal the
messages Celery itself sends.

The task id is a UUID5 of (spec sha256, episode id): the same work always has the same id,
which is what Flower shows and what makes re-publishing recognisable.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import redis

from worker.queue import keys
from worker.queue.counters import ADD_ENQUEUED
from worker.queue.messages import TASK_RUN_EPISODE, EpisodeMessage, task_id_maker

CHUNK = 5000
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
# Where a template takes an episode's values. JSON text never holds a raw NUL, so these cannot
# occur in the envelope itself.
SLOT_ID, SLOT_TASK_ID, SLOT_TAG = "\0i", "\0t", "\0g"
# The slots in the order the envelope has them (body, id, root_id, kwargsrepr, correlation_id,
# delivery_tag); ``envelopes`` relies on it and ``template`` checks it.
_SLOT_ORDER = (SLOT_ID, SLOT_TASK_ID, SLOT_TASK_ID, SLOT_ID, SLOT_TASK_ID, SLOT_TAG)


class MessageBuilder:
    """Builds the kombu/Celery envelope of an ``rtbench.run_episode`` message.

    ``template(spec_ref, spec_sha256)`` is the envelope of any episode of that spec with slots
    for the episode id, the task id and the delivery tag; ``envelopes`` fills it with one string
    join a message (``json.dumps`` of a nested dict per message would cost most of the enqueue
    time). The result is the JSON a Celery producer sends (checked against Celery by the tests).
    """

    def __init__(self, queue: str, priority: int = 0, task: str = TASK_RUN_EPISODE) -> None:
        self.queue, self.priority = queue, priority
        self.origin = f"producer{os.getpid()}@{socket.gethostname()}"
        self.tag_prefix = uuid.uuid4().hex + "-"
        self._sequence = 0
        self._templates: dict[tuple[str, str], str] = {}
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
        self._skeleton = skeleton.replace("{", "{{").replace("}", "}}")
        for name, marker in markers.items():
            self._skeleton = self._skeleton.replace(f'"{marker}"', "{" + name + "}")

    def template(self, spec_ref: str, spec_sha256: str) -> str:
        """The envelope of the spec's episodes, with ``SLOT_*`` where an episode's values go.

        Episode ids are validated names (letters, digits, ``_.-/``): they need no escaping in
        JSON or in a Python repr, so they go in as they are.
        """
        template = self._templates.get((spec_ref, spec_sha256))
        if template is None:
            kwargs_tail = f", 'spec': {spec_ref!r}, 'spec_sha256': {spec_sha256!r}}}"
            # The id comes first in the body, before any text of the spec's: the first marker is its.
            body = json.dumps(json.dumps([[], {"episode_id": "@@ID@@", "spec": spec_ref, "spec_sha256": spec_sha256},
                                          _EMBED])).replace("@@ID@@", SLOT_ID, 1)
            kwargsrepr = json.dumps("{'episode_id': '")[:-1] + SLOT_ID + json.dumps("'" + kwargs_tail)[1:]
            template = self._skeleton.format(body=body, tid=f'"{SLOT_TASK_ID}"', kwargsrepr=kwargsrepr,
                                             tag=f'"{SLOT_TAG}"')
            if tuple(re.findall("\0.", template)) != _SLOT_ORDER or not template.isascii():
                raise AssertionError("the envelope's slots moved: update _SLOT_ORDER and envelopes()")
            self._templates[(spec_ref, spec_sha256)] = template
        return template

    def next_tags(self, count: int) -> int:
        """Reserve ``count`` delivery tags; returns the first one's number."""
        first = self._sequence + 1
        self._sequence += count
        return first

    def envelope(self, message: EpisodeMessage) -> str:
        """One message, as ``publish_ids`` sends it (tests, baselines)."""
        return self.envelopes(message.spec_ref, message.spec_sha256, [message.key.id])[0]

    def envelopes(self, spec_ref: str, spec_sha256: str, episode_ids: Sequence[str]) -> list[str]:
        """The messages of these episodes of one spec: the template filled, one join each."""
        pieces = self.template(spec_ref, spec_sha256).split("\0")
        p0, p1, p2, p3, p4, p5, p6 = pieces[0], *(piece[1:] for piece in pieces[1:])
        task_id = task_id_maker(spec_sha256)
        tag = f"{self.tag_prefix}{{}}".format
        first = self.next_tags(len(episode_ids))
        envelopes = []
        for n, episode_id in enumerate(episode_ids, first):
            tid = task_id(episode_id)
            envelopes.append("".join((p0, episode_id, p1, tid, p2, tid, p3, episode_id, p4, tid, p5, tag(n), p6)))
        return envelopes

    def envelope_for(self, kwargs: dict, tid: str) -> str:
        """The envelope of a task message with these keyword arguments (tests send bad ones)."""
        return self._skeleton.format(body=json.dumps(json.dumps([[], kwargs, _EMBED])), tid=json.dumps(tid),
                                     kwargsrepr=json.dumps(repr(kwargs)),
                                     tag=f'"{self.tag_prefix}{self.next_tags(1)}"')


# One chunk is one transaction: the messages (LPUSH), then their episodes noted as enqueued
# (counters.ADD_ENQUEUED, ARGV: the publish time, then the ids). Redis refuses the whole
# transaction when it is full (maxmemory) as the LPUSH is queued or at EXEC; once EXEC runs,
# the push happens and at worst the note fails after it (Redis 6 decides a script's
# out-of-memory state when it is queued). So an episode is never noted as enqueued without its
# message (enqueue would skip it for ever); a message without its note is sent again by the
# next enqueue, and a duplicate runs once. Without the transaction, a 6 MB LPUSH refused for
# its own size would be followed by a small note that Redis accepts.


def publish_ids(client: redis.Redis, spec_ref: str, spec_sha256: str, episode_ids: Sequence[str], *, queue: str,
                priority: int = 0) -> int:
    """Push one spec's episodes in order (the first is consumed first) and note them as enqueued.

    The only way rtbench puts an episode on the queue: the task id is the episode's fixed one
    and the ``enqueued:`` entry is written with it (with its counters), so that ``enqueue``
    recognises the message. Each chunk is framed here (``_command``: redis-py's packer cost
    more than building the message) and sent on a second thread while this one builds the next.
    An error of either is raised here; the chunks before it stay sent and noted, and running
    ``enqueue`` again sends the rest.
    """
    builder = MessageBuilder(queue, priority)
    note = ["EVALSHA", client.script_load(ADD_ENQUEUED), "5", keys.enqueued(spec_sha256), keys.done(spec_sha256),
            keys.counts(spec_sha256), keys.given_up(spec_sha256), keys.stopped(spec_sha256), repr(time.time())]
    multi, exec_ = _command(["MULTI"]), _command(["EXEC"])
    push = ["LPUSH", keys.queue_key(queue, priority)]  # kombu pops from the right: LPUSH in order is FIFO
    connection = client.connection_pool.get_connection()

    def send(transaction: bytes) -> None:
        try:
            connection.send_packed_command([transaction], check_health=False)
            replies = [_reply(connection) for _ in range(4)]  # MULTI, LPUSH and EVALSHA queued, EXEC
        except BaseException:
            connection.disconnect()  # a reply still unread would answer the next command
            raise
        results = replies[3] if isinstance(replies[3], list) else []
        for reply in [*replies, *results]:  # the first error says why (e.g. out of memory)
            if isinstance(reply, redis.exceptions.ResponseError):
                raise reply

    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="publish") as sender:
            in_flight: Future | None = None
            for chunk in _chunks(episode_ids, CHUNK):
                envelopes = builder.envelopes(spec_ref, spec_sha256, chunk)
                transaction = multi + _command([*push, *envelopes]) + _command([*note, *chunk]) + exec_
                if in_flight is not None:
                    in_flight.result()  # the previous chunk is stored (or its error is raised) first
                in_flight = sender.submit(send, transaction)
            if in_flight is not None:
                in_flight.result()
    finally:
        client.connection_pool.release(connection)
    return len(episode_ids)


def _reply(connection) -> object:
    """The next reply; an error reply is returned, not raised (the replies after it are read too)."""
    try:
        return connection.read_response()
    except redis.exceptions.ResponseError as exc:
        return exc


def _command(parts: list[str]) -> bytes:
    """A Redis command in the protocol's framing. Messages and ids are ASCII, so a part's length
    is its size and the command is framed as text; a non-ASCII part (a queue's name) is framed
    by its bytes."""
    text = "".join([f"*{len(parts)}\r\n", *(f"${len(part)}\r\n{part}\r\n" for part in parts)])
    if text.isascii():
        return text.encode("ascii")
    encoded = [part.encode() for part in parts]
    return b"".join([b"*%d\r\n" % len(encoded), *(b"$%d\r\n%b\r\n" % (len(part), part) for part in encoded)])


def publish(client: redis.Redis, messages: Sequence[EpisodeMessage], *, queue: str, priority: int = 0) -> int:
    """``publish_ids`` for messages of any specs, in their order."""
    for (ref, sha), run in itertools.groupby(messages, key=lambda m: (m.spec_ref, m.spec_sha256)):
        publish_ids(client, ref, sha, [m.key.id for m in run], queue=queue, priority=priority)
    return len(messages)


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
