"""Claims on episodes: their Lua scripts (``QueueState`` runs them), and
keeping a running episode's claim alive: one thread per process renews every
claim it holds, and only while the claim is still its own (a claim that lapsed
and was taken is left alone)."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import ClassVar

import redis

from benchmark.common.process_id import process_id

# Release only our own claim.
RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
# One round trip (it was three): {-1, notice} while the worker is blocked,
# {-2} when the episode is in its spec's done-set (done here or on another
# machine: nothing is claimed or counted), {-3} when it is in its stopped
# set (withdrawn by a stop rule or a purge: acknowledged unrun), {0, owner} when another delivery
# holds the claim, else claim and count the attempt: {attempt, why the
# previous attempt ended (or false)}.
CLAIM = """
local notice = redis.call('get', KEYS[4])
if notice then return {-1, notice} end
if redis.call('sismember', KEYS[5], ARGV[4]) == 1 then return {-2} end
if redis.call('sismember', KEYS[6], ARGV[4]) == 1 then return {-3} end
if not redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {0, redis.call('get', KEYS[1])}
end
local previous = redis.call('get', KEYS[3])
redis.call('set', KEYS[3], ARGV[3])
return {redis.call('incr', KEYS[2]), previous}
"""
# Give back a claim whose attempt was the machine's fault, not the episode's (a results folder
# that cannot be written, a worker shut down): the attempt is not counted.
UNCLAIM = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('del', KEYS[1])
if redis.call('decr', KEYS[2]) <= 0 then redis.call('del', KEYS[2], KEYS[3]) end
return 1
"""
# Release a claim held by a delivery that is known to be dead (its owner is "<worker>:<pid>:<task id>").
RELEASE_DEAD = """
local owner = redis.call('get', KEYS[1])
if owner and string.sub(owner, 1, #ARGV[1]) == ARGV[1] and string.sub(owner, -#ARGV[2]) == ARGV[2] then
  return redis.call('del', KEYS[1])
end
return 0
"""
# Renew the claim only while we still own it.
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"


class Heartbeat:
    """Renews the claims of a process's running episodes from one background thread.

    One long-lived thread per process (not one per episode): starting and joining a thread
    for every zero-cost episode was a measurable part of the queue's overhead.
    """

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _claims: ClassVar[dict[tuple[int, str], tuple[redis.Redis, str, int]]] = {}
    _thread: ClassVar[threading.Thread | None] = None
    _pid: ClassVar[int | None] = None

    def __init__(self, client: redis.Redis, key: str, owner: str, ttl_s: float) -> None:
        self._entry = (client, owner, int(ttl_s * 1000))
        self._id = (id(self), key)

    def __enter__(self) -> Heartbeat:
        cls = type(self)
        with cls._lock:
            cls._claims[self._id] = self._entry
            if cls._thread is None or cls._pid != process_id():  # a forked child needs its own thread
                cls._pid = process_id()
                cls._thread = threading.Thread(target=cls._run, name="rtbench-claim-heartbeat", daemon=True)
                cls._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with type(self)._lock:
            type(self)._claims.pop(self._id, None)

    @classmethod
    def _run(cls) -> None:
        while True:
            with cls._lock:
                claims = list(cls._claims.items())
            interval = min((ttl for _, (_, _, ttl) in claims), default=3000) / 3000
            for (_, key), (client, owner, ttl_ms) in claims:
                # Redis restarting: the next beat retries; a lapsed claim only defers other deliveries.
                with contextlib.suppress(redis.RedisError):
                    client.eval(_RENEW, 1, key, owner, ttl_ms)
            time.sleep(interval)
