"""Per (spec, policy) counters kept next to the sets they summarise: status in O(policies).

``keys.counts(sha)`` is a hash with, per policy ``p``:

- ``enqueued:<p>``       episodes of ``p`` in ``enqueued:<sha>`` (sent, not given up or withdrawn)
- ``done:<p>``           episodes of ``p`` in ``done:<sha>``
- ``enqueued_done:<p>``  episodes of ``p`` in both, so that queued or running = enqueued - enqueued_done
- ``given_up:<p>``       episodes of ``p`` in ``given_up:<sha>``: their retries ran out (an
                         infrastructure-error record), and nobody sent them again since
- ``stopped:<p>``        episodes of ``p`` in ``stopped:<sha>``: their messages were withdrawn
                         before they ran (``producer dead --purge``), and nobody sent them again

An episode sent again, or done, leaves the last two sets. Every change of those sets goes
through a script here that changes the set and its counters in one step (a Lua script is
atomic in Redis), so they cannot drift apart while workers and producers run. The sets stay
the truth: ``rebuild`` recomputes the counters from them in one script (``enqueue`` runs it
when the counters disagree with the sets it read), and ``count_sets`` recomputes them on the
client for ``producer status --verify``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import redis

from worker.queue import keys

FIELDS = ("enqueued", "done", "enqueued_done", "given_up", "stopped")
# The counter deltas of one script run, applied once at its end (fewer calls than per episode).
_PREAMBLE = """
local delta = {}
local function add(field, id, n)
  local name = field .. ':' .. string.match(id, '^[^/]+')
  delta[name] = (delta[name] or 0) + n
end
-- Sent again, or done: no longer given up or stopped (KEYS[4], KEYS[5]).
local function settle(id)
  if redis.call('srem', KEYS[4], id) == 1 then add('given_up', id, -1) end
  if redis.call('srem', KEYS[5], id) == 1 then add('stopped', id, -1) end
end
local function flush()
  for name, n in pairs(delta) do
    if n ~= 0 then redis.call('hincrby', KEYS[3], name, n) end
  end
end
"""


def _membership_step(change: str, field: str, sign: int, other: str) -> str:
    """Lua for one ``id``: change one set (``change`` returns 1 when the id's
    membership changed) and count it in ``field`` and, when the id is in the
    other set (``other``), in ``enqueued_done``. KEYS[1..5]: enqueued hash,
    done set, counts, given-up set, stopped set."""
    return f"""
  if {change} == 1 then
    add('{field}', id, {sign})
    if {other} == 1 then add('enqueued_done', id, {sign}) end
  end"""


def _membership_script(first_id: int, change: str, field: str, sign: int, other: str, then: str = "") -> str:
    """``_membership_step`` for each id, then the Lua ``then``; ARGV from ``first_id``: ids."""
    return _PREAMBLE + f"""
for i = {first_id}, #ARGV do
  local id = ARGV[i]{_membership_step(change, field, sign, other)}{then}
end
flush()
"""


_IN_DONE, _IN_ENQUEUED = "redis.call('sismember', KEYS[2], id)", "redis.call('hexists', KEYS[1], id)"
# ARGV[1] of ADD_ENQUEUED is the publish time, the hash's value. publish.py runs it in the
# transaction that pushes the messages.
_SETTLE = "\n  settle(id)"
ADD_ENQUEUED = _membership_script(2, "redis.call('hset', KEYS[1], id, ARGV[1])", "enqueued", 1, _IN_DONE, _SETTLE)
_ADD_DONE = _membership_script(1, "redis.call('sadd', KEYS[2], id)", "done", 1, _IN_ENQUEUED, _SETTLE)
# Withdrawn before it ran (its message deleted): stopped, unless done meanwhile.
_WITHDRAW = _membership_script(1, "redis.call('hdel', KEYS[1], id)", "enqueued", -1, _IN_DONE, """
  if redis.call('sismember', KEYS[2], id) == 0 and redis.call('sadd', KEYS[5], id) == 1 then
    add('stopped', id, 1)
  end""")
_REMOVE_DONE = _membership_script(1, "redis.call('srem', KEYS[2], id)", "done", -1, _IN_ENQUEUED)
def outcome_functions(rules: str, outcomes: str, counts: str) -> str:
    """Lua for stop rules' outcomes (``stop_rules.py``), given the keys of the rules hash, the
    outcomes hash and the outcome counts: ``note_outcome(id, code)`` notes an episode's outcome
    if its policy has a rule; ``noted_reply()`` is {policy, its noted outcomes, ...} of the
    policies noted so far."""
    return f"""
local noted = {{}}
local function note_outcome(id, code)
  local policy = string.match(id, '^[^/]+')
  if redis.call('hexists', {rules}, policy) == 1 then
    if redis.call('hset', {outcomes}, id, code) == 1 then redis.call('hincrby', {counts}, policy, 1) end
    noted[policy] = true
  end
end
local function noted_reply()
  local reply = {{}}
  for policy in pairs(noted) do
    table.insert(reply, policy)
    table.insert(reply, redis.call('hget', {counts}, policy) or '0')
  end
  return reply
end
"""


# Records written (``QueueState.mark_finished``) in one round trip: per episode, a
# done one joins the done-set, one that is not (an infrastructure error) leaves both
# sets; then its finish time, its attempt keys cleared, its claim released if still
# ``owner``'s, the machine that wrote it noted (``enqueue --reconcile``), its time
# use added (``time_sums.py``) and, for a policy with a stop rule, its outcome noted
# (``stop_rules.py``: in this script, so that no kill can mark an episode and lose its
# outcome). KEYS: the five above, finished zset, time-use hash, finished-on hash, stop
# rules hash, outcomes hash, outcome counts hash, then claim, attempts and last-error
# keys per episode. ARGV: now, then per episode id, done (1 or 0), owner ('' for none),
# machine, the time-use field prefix, n, the outcome ('' for none), and n (sum name,
# value) pairs. Returns {policy, its noted outcomes, ...} of policies with a rule.
_ADDED = _membership_step("redis.call('sadd', KEYS[2], id)", "done", 1,
                          _IN_ENQUEUED) + _SETTLE
_DROPPED = (_membership_step("redis.call('srem', KEYS[2], id)", "done", -1,
                             _IN_ENQUEUED)
            + _membership_step("redis.call('hdel', KEYS[1], id)", "enqueued",
                               -1, _IN_DONE)
            + """
    if redis.call('sadd', KEYS[4], id) == 1 then add('given_up', id, 1) end
    if redis.call('srem', KEYS[5], id) == 1 then add('stopped', id, -1) end""")
FINISH = _PREAMBLE + outcome_functions("KEYS[9]", "KEYS[10]", "KEYS[11]") + f"""
local k, a = 12, 2
while a <= #ARGV do
  local id, owner, prefix, n = ARGV[a], ARGV[a + 2], ARGV[a + 4], tonumber(ARGV[a + 5])
  if ARGV[a + 1] == '1' then{_ADDED}
  else{_DROPPED}
  end
  redis.call('zadd', KEYS[6], ARGV[1], id)
  if ARGV[a + 3] ~= '' then redis.call('hset', KEYS[8], id, ARGV[a + 3]) end
  redis.call('del', KEYS[k + 1], KEYS[k + 2])
  if owner ~= '' and redis.call('get', KEYS[k]) == owner then
    redis.call('del', KEYS[k])
  end
  if ARGV[a + 6] ~= '' then note_outcome(id, ARGV[a + 6]) end
  for j = a + 7, a + 5 + 2 * n, 2 do
    redis.call('hincrbyfloat', KEYS[7], prefix .. ARGV[j], ARGV[j + 1])
  end
  k, a = k + 3, a + 7 + 2 * n
end
flush()
return noted_reply()
"""
_REBUILD = _PREAMBLE + """
redis.call('del', KEYS[3])
for _, id in ipairs(redis.call('hkeys', KEYS[1])) do
  add('enqueued', id, 1)
  if redis.call('sismember', KEYS[2], id) == 1 then add('enqueued_done', id, 1) end
end
for _, id in ipairs(redis.call('smembers', KEYS[2])) do add('done', id, 1) end
for _, id in ipairs(redis.call('smembers', KEYS[4])) do add('given_up', id, 1) end
for _, id in ipairs(redis.call('smembers', KEYS[5])) do add('stopped', id, 1) end
flush()
"""
CHUNK = 5000  # ids per script run: Redis serves others between chunks


class Counters:
    """The scripts, registered on one client (EVALSHA, reloaded by redis-py when Redis restarted)."""

    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self._withdraw = client.register_script(_WITHDRAW)
        self._add_done = client.register_script(_ADD_DONE)
        self._remove_done = client.register_script(_REMOVE_DONE)
        self._rebuild = client.register_script(_REBUILD)

    @staticmethod
    def script_keys(spec_sha: str) -> list[str]:
        """A spec's enqueued hash, done set, counts, given-up and stopped sets (the scripts' KEYS)."""
        return [keys.enqueued(spec_sha), keys.done(spec_sha), keys.counts(spec_sha), keys.given_up(spec_sha),
                keys.stopped(spec_sha)]

    def withdraw(self, spec_sha: str, ids: Iterable[str], client: object | None = None) -> None:
        """Episodes whose messages were deleted before they ran: no longer enqueued; stopped."""
        self._run(self._withdraw, spec_sha, ids, client)

    def add_done(self, spec_sha: str, ids: Iterable[str], client: object | None = None) -> None:
        self._run(self._add_done, spec_sha, ids, client)

    def remove_done(self, spec_sha: str, ids: Iterable[str], client: object | None = None) -> None:
        self._run(self._remove_done, spec_sha, ids, client)

    def _run(self, script, spec_sha: str, ids: Iterable[str], client: object | None) -> None:
        ids = list(ids)
        for start in range(0, len(ids), CHUNK):
            script(keys=self.script_keys(spec_sha), args=ids[start:start + CHUNK], client=client)

    def rebuild(self, spec_sha: str) -> None:
        """Recompute the spec's counters from its sets, atomically."""
        self._rebuild(keys=self.script_keys(spec_sha), args=[])

    def read(self, spec_sha: str) -> dict[str, Counter]:
        """field -> Counter(policy -> n), from the counters (one HGETALL)."""
        return parse(self.r.hgetall(keys.counts(spec_sha)))


def parse(raw: dict[str, str]) -> dict[str, Counter]:
    counts: dict[str, Counter] = {field: Counter() for field in FIELDS}
    for name, value in raw.items():
        field, _, policy = name.partition(":")
        if field in counts and int(value):
            counts[field][policy] = int(value)
    return counts


def count_sets(done: set[str], enqueued: Iterable[str], given_up: Iterable[str] = (),
               stopped: Iterable[str] = ()) -> dict[str, Counter]:
    """The counters as the sets say they should be (client side: ``--verify``, enqueue's check)."""
    counts: dict[str, Counter] = {field: Counter() for field in FIELDS}
    for name, members in (("done", done), ("given_up", given_up), ("stopped", stopped)):
        for episode_id in members:
            counts[name][episode_id.split("/", 1)[0]] += 1
    for episode_id in enqueued:
        policy = episode_id.split("/", 1)[0]
        counts["enqueued"][policy] += 1
        if episode_id in done:
            counts["enqueued_done"][policy] += 1
    return counts


def drift(kept: dict[str, Counter], recomputed: dict[str, Counter], policies: Iterable[str] | None = None) -> list[str]:
    """One line per (policy, counter) where the counters kept in Redis differ from the sets."""
    if policies is None:
        policies = sorted({p for counts in (*kept.values(), *recomputed.values()) for p in counts})
    return [f"{policy}: counter {field} is {kept[field][policy]:,}, the sets say {recomputed[field][policy]:,}"
            for policy in policies for field in FIELDS if kept[field][policy] != recomputed[field][policy]]
