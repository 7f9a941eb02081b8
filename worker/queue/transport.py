"""kombu's Redis transport, with envelopes that cannot be decoded sent to the dead-letter list.

kombu pops a message off the Redis list before it decodes it: an item that is not JSON, or a
JSON envelope whose body is not base64 (or lacks its properties), raises inside the worker's
event loop, and the item, popped already, is gone. This channel catches exactly those two
steps and stores the raw item in the dead-letter list (truncated) before the worker moves on.
The app selects it with ``broker_transport`` (see ``worker.app``); everything else is kombu's.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from queue import Empty

from kombu.transport import redis as kombu_redis
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from worker.queue.state import QueueState

log = logging.getLogger(__name__)


class Channel(kombu_redis.Channel):
    def basic_consume(self, queue, no_ack, callback, consumer_tag, **kwargs):
        result = super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)
        deliver = self.connection._callbacks[queue]

        def deliver_decodable(raw_message):
            try:
                self.Message(raw_message, channel=self)  # what kombu does first, unguarded
            except Exception as exc:
                return self._dead_letter(raw_message, "undecodable_envelope", f"{type(exc).__name__}: {exc}")
            return deliver(raw_message)

        self.connection._callbacks[queue] = deliver_decodable
        return result

    def _brpop_read(self, **options):
        # kombu's own steps, with the JSON decoding of the popped item guarded.
        try:
            try:
                dest_item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()  # the next poll reconnects
                raise
            if not dest_item:
                raise Empty()
            dest, item = dest_item
            dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            try:
                payload = loads(bytes_to_str(item))
                if not isinstance(payload, dict):
                    raise ValueError(f"a JSON {type(payload).__name__}, not an object")
            except (ValueError, TypeError) as exc:
                self._dead_letter(item, "undecodable_item", f"queue {dest!r}: not a kombu envelope ({exc})")
                return True
            self.connection._deliver(payload, dest)
            return True
        finally:
            self._in_poll = None
            flush_reauth = getattr(self, "_flush_brpop_reauth", None)  # kombu >= 5.6
            if flush_reauth is not None:
                flush_reauth()

    def _dead_letter(self, raw, reason: str, detail: str) -> None:
        if not isinstance(raw, str | bytes):  # a decoded envelope: kept as the JSON it came as
            raw = json.dumps(raw, default=repr)
        try:
            with self.conn_or_acquire() as client:
                QueueState(client).dead_letter(reason, detail, message=raw, episode_id=None,
                                               worker=f"{socket.gethostname()}:{os.getpid()}")
        except Exception:
            log.exception("could not store a dead letter (%s: %s); the item was: %r", reason, detail, raw[:4096])
            return
        log.error("dead letter (%s): %s", reason, detail)


class Transport(kombu_redis.Transport):
    Channel = Channel
