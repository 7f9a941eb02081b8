"""The queue's bookkeeping in Redis, shared by workers and producers (key names: ``keys``).

Redis is a cache of work, never the source of truth (records are): losing every key here
costs at most some re-enqueueing, which ``enqueue`` reconciles against the records.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import redis

from worker.queue import keys, time_sums
from worker.queue.claim_heartbeat import (
    CLAIM,
    RELEASE,
    RELEASE_DEAD,
    UNCLAIM,
    Heartbeat,
)
from worker.queue.counters import FINISH, Counters
from worker.queue.dead_letter_list import DeadLetterList
from worker.queue.messages import EpisodeMessage
from worker.queue.publish import publish, publish_ids, publish_tasks, queued_task_id, unacked_task_id

# The fleet's push budget, shared fairly (``QueueState.take_push_slot``). KEYS: this minute's
# push counter, the waiting line (zset machine -> when it first asked), each waiter's lapse
# time (hash). ARGV: machine, pushes per minute, now, the machine's patience (both seconds).
# 1: push now (the slot is counted, the machine leaves the line); 0: wait in line.
_PUSH_SLOT = """
local machine, per_minute = ARGV[1], tonumber(ARGV[2])
local now, stale_after = tonumber(ARGV[3]), tonumber(ARGV[4])
for _, waiter in ipairs(redis.call('zrange', KEYS[2], 0, -1)) do
  local lapses = tonumber(redis.call('hget', KEYS[3], waiter))
  if not lapses or lapses < now then
    redis.call('zrem', KEYS[2], waiter)
    redis.call('hdel', KEYS[3], waiter)
  end
end
redis.call('zadd', KEYS[2], 'NX', ARGV[3], machine)
redis.call('hset', KEYS[3], machine, string.format('%.6f', now + stale_after))
local idle_ms = math.ceil(stale_after * 1000)
for i = 2, 3 do
  if redis.call('pttl', KEYS[i]) < idle_ms then redis.call('pexpire', KEYS[i], idle_ms) end
end
local left = per_minute - tonumber(redis.call('get', KEYS[1]) or '0')
if left <= 0 or redis.call('zrank', KEYS[2], machine) >= left then return 0 end
redis.call('incr', KEYS[1])
redis.call('expire', KEYS[1], 120)
redis.call('zrem', KEYS[2], machine)
redis.call('hdel', KEYS[3], machine)
return 1
"""
_LOST = "worker_lost: its worker died while running it"
DONE_ALREADY = -2  # what ``claim`` returns for an episode in the done-set
STOPPED_ALREADY = -3  # ... and for one in the stopped set (its slice was withdrawn)


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, health_check_interval=30, socket_timeout=30,
                                socket_connect_timeout=10, retry_on_timeout=True)


class QueueState(DeadLetterList):
    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self.counters = Counters(client)
        # EVALSHA: the scripts' text is not sent with every delivery.
        self._claim = client.register_script(CLAIM)
        self._release = client.register_script(RELEASE)
        self._finish = client.register_script(FINISH)

    # ------------------------------------------------------------------ the queue itself
    def publish(self, messages: list[EpisodeMessage], *, queue: str, priority: int = 0) -> int:
        return publish(self.r, messages, queue=queue, priority=priority)

    def publish_ids(self, spec_ref: str, spec_sha: str, episode_ids: list[str], *, queue: str,
                    priority: int = 0) -> int:
        return publish_ids(self.r, spec_ref, spec_sha, episode_ids, queue=queue, priority=priority)

    def publish_tasks(self, task: str, items: list[tuple[dict, str]], *, queue: str) -> int:
        """Messages of another task than episodes: (keyword arguments, task id) each."""
        return publish_tasks(self.r, task, items, queue=queue)

    def queue_length(self, queue: str) -> int:
        """Messages waiting in ``queue`` (every priority bucket)."""
        with self.r.pipeline() as pipe:
            for key in keys.queue_keys(queue):
                pipe.llen(key)
            return sum(pipe.execute())

    def queued_task_ids(self, queue: str) -> set[str]:
        """Task ids of the messages waiting in ``queue`` or delivered but unacknowledged."""
        ids = {queued_task_id(raw) for key in keys.queue_keys(queue) for raw in self.r.lrange(key, 0, -1)}
        ids.update(unacked_task_id(raw) for raw in self.r.hvals(keys.UNACKED))
        return ids

    def specs_overview(self) -> list[tuple[str, int, int]]:
        """(spec sha256, episodes done, episodes enqueued) of every spec enqueued so far."""
        prefix = len(keys.enqueued(""))
        shas = sorted(key[prefix:] for key in self.r.scan_iter(keys.ENQUEUED_PATTERN))
        with self.r.pipeline() as pipe:
            for sha in shas:
                pipe.scard(keys.done(sha))
                pipe.hlen(keys.enqueued(sha))
            counts = pipe.execute()
        return [(sha, counts[2 * i], counts[2 * i + 1]) for i, sha in enumerate(shas)]

    # ------------------------------------------------------------------ claims and attempts
    def claim(self, spec_sha: str, episode_id: str, owner: str, ttl_s: float,
              worker: str) -> tuple[int, Any]:
        """Claim the episode and count one more attempt: (attempt, why the
        previous attempt ended or None); (0, its owner) when another delivery
        holds the claim; (-1, the notice) while ``worker`` is blocked
        (``worker_block``); (DONE_ALREADY, None) when the episode is in the spec's done-set,
        (STOPPED_ALREADY, None) when in its stopped set.

        ``last_error`` is set to worker_lost now and overwritten if this attempt ends in a
        known way: if the worker dies, the next delivery knows why the attempt was lost.
        """
        reply = self._claim(
            keys=[*_attempt_keys(episode_id), keys.blocked(worker), keys.done(spec_sha), keys.stopped(spec_sha)],
            args=[owner, int(ttl_s * 1000), _LOST, episode_id])
        detail = reply[1] if len(reply) > 1 and reply[1] else None
        return int(reply[0]), (json.loads(detail) if reply[0] == -1 else detail)

    def release(self, episode_id: str, owner: str) -> None:
        self._release(keys=[keys.claim(episode_id)], args=[owner])

    def unclaim(self, episode_id: str, owner: str) -> None:
        """Release our claim and take back the attempt it counted."""
        self.r.eval(UNCLAIM, 3, *_attempt_keys(episode_id), owner)

    def release_killed(self, episode_id: str, worker: str, delivery_id: str, why: str) -> None:
        """The delivery ``delivery_id`` of ``worker`` was killed: note why, free its claim."""
        with self.r.pipeline(transaction=False) as pipe:
            pipe.set(keys.last_error(episode_id), why)
            pipe.eval(RELEASE_DEAD, 1, keys.claim(episode_id), f"{worker}:", f":{delivery_id}")
            pipe.execute()

    def heartbeat(self, episode_id: str, owner: str, ttl_s: float) -> Heartbeat:
        return Heartbeat(self.r, keys.claim(episode_id), owner, ttl_s)

    def running(self) -> list[str]:
        start = len(keys.claim(""))
        return [key[start:] for key in self.r.scan_iter(keys.CLAIM_PATTERN, count=1000)]

    def running_workers(self) -> dict[str, str]:
        """Episode id -> the worker (Celery hostname: ``gpu3.1@machine``) whose delivery holds its claim."""
        ids = self.running()
        owners = self.r.mget([keys.claim(i) for i in ids]) if ids else []
        # A claim's value is "<hostname>:<pid>:<delivery id>" (worker/delivery.py); gone: released meanwhile.
        return {episode_id: owner.split(":", 1)[0] for episode_id, owner in zip(ids, owners, strict=True) if owner}

    def note_error(self, episode_id: str, text: str) -> None:
        self.r.set(keys.last_error(episode_id), text)

    def count_failure(self, episode_id: str, text: str) -> int:
        """Count a delivery that failed before it claimed the episode; returns the attempts so far."""
        with self.r.pipeline(transaction=False) as pipe:
            pipe.incr(keys.attempts(episode_id))
            pipe.set(keys.last_error(episode_id), text)
            attempts, _ = pipe.execute()
        return int(attempts)

    def reset_attempts(self, episode_ids: Iterable[str]) -> None:
        """Forget the attempts of episodes no delivery is running (a fresh start for each)."""
        for chunk in _chunks(list(episode_ids), 10_000):
            self.r.delete(*_counter_keys(chunk))

    # ------------------------------------------------------------------ done / enqueued
    def mark_done(self, spec_sha: str, episode_id: str, owner: str | None = None) -> None:
        """Record the episode as finished (and release our claim) in one round trip."""
        self.mark_finished([(spec_sha, episode_id, owner, True, None, None)])

    def mark_finished(self, finished: list[tuple]) -> dict[str, dict[str, int]]:
        """Records were written, each (spec sha, episode id, our claim or None, done, time use,
        outcome): a done one joins the done-set; an infrastructure-error record (not done: the
        retries ran out) leaves the episode free to be enqueued again; time use, (machine, the
        record's ``SUMS``), goes to status's duty cycle; the machine (from the time use, else the
        claim's owner, ``<worker>@<machine>:<pid>:<task>``) is noted for ``enqueue --reconcile``;
        the outcome ('1', '0', 'e' or None) is noted for a policy with a stop rule. One round
        trip: a script run per spec (EVALSHA; redis-py loads it again after a Redis restart).
        Returns, per spec, the policies with a stop rule -> their noted outcomes."""
        by_spec: dict[str, tuple[list[str], list[str | float | int]]] = {}
        now = time.time()
        for spec_sha, episode_id, owner, done, time_use, outcome in finished:
            if spec_sha not in by_spec:
                names = [*self.counters.script_keys(spec_sha), keys.finished(spec_sha), keys.time_use(spec_sha),
                         keys.finished_on(spec_sha), keys.stop_rules(spec_sha), keys.outcomes(spec_sha),
                         keys.outcome_counts(spec_sha)]
                by_spec[spec_sha] = names, [now]
            names, values = by_spec[spec_sha]
            names += _attempt_keys(episode_id)
            machine = time_use[0] if time_use is not None else owner_machine(owner)
            values += (episode_id, int(done), owner or "", machine)
            prefix, n, *pairs = (time_sums.finish_args(episode_id.split("/", 1)[0], *time_use)
                                 if time_use is not None else ("", 0))
            values += (prefix, n, outcome or "", *pairs)
        noted = {}
        for spec_sha, (names, values) in by_spec.items():
            reply = self._finish(keys=names, args=values)
            noted[spec_sha] = {reply[i]: int(reply[i + 1]) for i in range(0, len(reply), 2)}
        return noted

    def repair_done(self, spec_sha: str, done: Iterable[str], not_done: Iterable[str]) -> None:
        """Make the done-set agree with the records: add episodes whose record is done (a mark
        lost while Redis was down) and clear their attempts; drop episodes whose record is an
        infrastructure error."""
        done = list(done)
        self.counters.add_done(spec_sha, done)
        self.counters.remove_done(spec_sha, not_done)
        self.reset_attempts(done)

    def running_of(self, spec_sha: str, episode_ids: list[str]) -> list[str]:
        """Those of ``episode_ids`` (claimed ones) that are enqueued for the spec and not done."""
        if not episode_ids:
            return []
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.enqueued(spec_sha), episode_ids)
            pipe.smismember(keys.done(spec_sha), episode_ids)
            enqueued, done = pipe.execute()
        return [e for e, sent, finished in zip(episode_ids, enqueued, done, strict=True) if sent and not finished]

    def done_of(self, spec_sha: str, episode_ids: Iterable[str]) -> set[str]:
        ids = list(episode_ids)
        flags = self.r.smismember(keys.done(spec_sha), ids) if ids else []
        return {e for e, done in zip(ids, flags, strict=True) if done}

    def set_sizes(self, spec_sha: str) -> tuple[int, int]:
        """(episodes in the enqueued hash, episodes in the done-set) of a spec."""
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hlen(keys.enqueued(spec_sha))
            pipe.scard(keys.done(spec_sha))
            enqueued, done = pipe.execute()
        return enqueued, done

    def enqueue_lock(self, spec_sha: str, wait_s: float = 600.0) -> redis.lock.Lock:
        """Held while one producer plans and sends a spec's episodes; another waits for it, then
        sees what was sent. It lapses 5 min after it was taken, so that a producer that died
        holding it blocks nobody for long (an enqueue of 1,000,000 episodes takes seconds)."""
        return self.r.lock(keys.enqueue_lock(spec_sha), timeout=300, blocking_timeout=wait_s, thread_local=False)

    def enqueue_fingerprints(self, spec_sha: str, policies: list[str]) -> list[str | None]:
        return self.r.hmget(keys.enqueue_fingerprint(spec_sha), policies) if policies else []

    def set_enqueue_fingerprints(self, spec_sha: str, fingerprints: dict[str, str]) -> None:
        if fingerprints:
            self.r.hset(keys.enqueue_fingerprint(spec_sha), mapping=fingerprints)

    def counts(self, spec_sha: str) -> dict[str, Counter]:
        """The spec's per-policy counters (``counters.py``): O(policies), not O(episodes)."""
        return self.counters.read(spec_sha)

    # ------------------------------------------------------------------ results sync
    def take_push_slot(self, machine: str, per_minute: int, stale_after_s: float, *,
                       now: float | None = None) -> bool:
        """One of the fleet's ``per_minute`` pushes of this minute for ``machine``, in turn.

        First come, first served per minute starved machines whose cycle fell late in the
        minute (one pushed once in 3 minutes while others pushed every minute). So a machine
        that asks and is refused joins a line, keeping the place of its first refused ask, and
        a slot goes to it only while fewer machines are ahead of it in line than slots are left
        this minute: the one that waited longest pushes first. Granted, it leaves the line.

        A place lapses ``stale_after_s`` after the machine's last ask (a crashed or stopped
        machine must not hold the front of the line forever); each machine's own patience is
        kept, so one with a long sync interval is not dropped by another's shorter one. A
        machine that asks again after its place lapsed joins at the back.

        ``now`` (epoch seconds) is the time the budget and the line are reckoned by: Redis's
        own clock when omitted, one clock for the whole fleet (machines' clocks drift apart;
        a late clock would count its pushes in another minute and keep a dead place alive).
        Tests pass a simulated time. One Lua script: asks from several machines cannot
        interleave between reading the line and taking the slot.
        """
        if now is None:
            seconds, micros = self.r.time()
            now = seconds + micros / 1e6
        push_keys = (keys.sync_pushes(int(now // 60)), keys.SYNC_PUSH_WAITERS, keys.SYNC_PUSH_ASKS)
        return bool(self.r.eval(_PUSH_SLOT, 3, *push_keys, machine, per_minute, repr(float(now)),
                                repr(float(stale_after_s))))

    def note_sync(self, machine: str, **fields: str | int | float) -> None:
        """Update a machine's sync status (``last_ok``, ``commit``, ``pending``, ``last_error``...)."""
        self.r.hset(keys.sync_status(machine), mapping={k: str(v) for k, v in fields.items()})

    def sync_statuses(self) -> dict[str, dict[str, str]]:
        start = len(keys.sync_status(""))
        return {key[start:]: self.r.hgetall(key) for key in sorted(self.r.scan_iter(keys.SYNC_STATUS_PATTERN))}

    def done(self, spec_sha: str) -> set[str]:
        return set(self.r.sscan_iter(keys.done(spec_sha), count=10_000))

    def given_up(self, spec_sha: str) -> set[str]:
        return set(self.r.sscan_iter(keys.given_up(spec_sha), count=10_000))

    def stopped(self, spec_sha: str) -> set[str]:
        return set(self.r.sscan_iter(keys.stopped(spec_sha), count=10_000))

    def where_finished(self, spec_sha: str, episode_ids: list[str]) -> dict[str, tuple[str, float | None]]:
        """Per episode: the machine that wrote its record ('' when unknown: marked from the
        records by ``enqueue``, or before rtbench noted machines) and when it ended."""
        if not episode_ids:
            return {}
        with self.r.pipeline(transaction=False) as pipe:
            pipe.hmget(keys.finished_on(spec_sha), episode_ids)
            pipe.zmscore(keys.finished(spec_sha), episode_ids)
            machines, times = pipe.execute()
        return {e: (m or "", t) for e, m, t in zip(episode_ids, machines, times, strict=True)}

    def finish_times_since(self, spec_sha: str, since: float) -> list[float]:
        """When each episode that ended at or after ``since`` ended (epoch seconds, ascending)."""
        return [score for _, score in self.r.zrangebyscore(keys.finished(spec_sha), since, "+inf", withscores=True)]

    def finished_ids_since(self, spec_sha: str, since: float) -> set[str]:
        """Episodes that ended (a record written, or found) at or after ``since``."""
        return set(self.r.zrangebyscore(keys.finished(spec_sha), since, "+inf"))

    def enqueued(self, spec_sha: str) -> dict[str, float]:
        return {k: float(v) for k, v in self.r.hscan_iter(keys.enqueued(spec_sha), count=10_000)}

    # ------------------------------------------------------------------ blocked workers
    def block_worker(self, worker: str, *, machine: str, reason: str, path: str, ttl_s: float) -> None:
        """Say why ``worker`` stopped taking episodes; expires unless its probe renews it."""
        entry = json.dumps({"worker": worker, "machine": machine, "reason": reason, "path": path,
                            "since": time.time()})
        self.r.set(keys.blocked(worker), entry, px=int(ttl_s * 1000))

    def worker_block(self, worker: str) -> dict[str, Any] | None:
        raw = self.r.get(keys.blocked(worker))
        return json.loads(raw) if raw else None

    def renew_block(self, worker: str, ttl_s: float) -> None:
        self.r.pexpire(keys.blocked(worker), int(ttl_s * 1000))

    def unblock_worker(self, worker: str) -> None:
        self.r.delete(keys.blocked(worker))

    def blocked_workers(self) -> list[dict[str, Any]]:
        found = sorted(self.r.scan_iter(keys.BLOCKED_PATTERN, count=1000))
        return [json.loads(raw) for raw in (self.r.mget(found) if found else []) if raw]


def owner_machine(owner: str | None) -> str:
    """The machine of a claim's owner (``<name>@<machine>:<pid>:<task id>``), '' if none."""
    worker = (owner or "").split(":", 1)[0]
    return worker.rpartition("@")[2] if "@" in worker else ""


def _attempt_keys(episode_id: str) -> tuple[str, str, str]:
    return keys.claim(episode_id), keys.attempts(episode_id), keys.last_error(episode_id)


def _counter_keys(episode_ids: Iterable[str]) -> list[str]:
    """The attempts and last-error keys of these episodes (what a fresh start clears)."""
    return [key for episode_id in episode_ids for key in _attempt_keys(episode_id)[1:]]


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
