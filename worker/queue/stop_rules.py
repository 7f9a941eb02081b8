"""Stop rules in Redis: the rule each slice was enqueued with, the outcomes it is checked on,
the note of a stop, and the withdrawal of a stopped slice's messages (docs/statistics.md).

``producer enqueue --stop-when`` sets a rule before it sends anything, noting the outcomes of
the records it has (``note_outcomes``); a worker's finisher notes each record's outcome for
policies with a rule in the script that marks it finished (``counters.FINISH``: a rule set
meanwhile is seen at once) and checks the rule (``worker/stop_check.py``). When it holds,
``note_stop`` keeps the first note and ``withdraw`` moves the slice's episodes that nobody runs
from enqueued to stopped (``counters.withdraw``), then deletes their waiting messages: a
message still delivered (prefetched, deferred) finds its episode stopped at its claim and is
acknowledged without running (``CLAIM``). Each step can run again: a worker killed halfway
leaves the next check to finish it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import redis

from worker.queue import keys
from worker.queue.counters import Counters, outcome_functions
from worker.queue.messages import task_id_maker
from worker.queue.publish import queued_task_id

WITHDRAWN_FOR_GOOD = 1 << 30  # ``checked`` once a stop's withdrawal finished: nothing to check

# KEYS: rules hash, outcomes hash, outcome counts; ARGV: (id, code) pairs. An episode of a policy
# with a rule gets its outcome (as FINISH does for the records workers write); returns {policy,
# episodes with an outcome, ...} of those policies.
_NOTE_OUTCOMES = outcome_functions("KEYS[1]", "KEYS[2]", "KEYS[3]") + """
for i = 1, #ARGV, 2 do note_outcome(ARGV[i], ARGV[i + 1]) end
return noted_reply()
"""
# KEYS[1]: a queue list; ARGV: messages to delete. The list is rewritten in its order in one
# step (LREM per message would scan it once each: minutes for 50,000).
_DELETE_MESSAGES = """
local doomed = {}
for _, raw in ipairs(ARGV) do doomed[raw] = true end
local items = redis.call('lrange', KEYS[1], 0, -1)
local kept, removed = {}, 0
for _, raw in ipairs(items) do
  if doomed[raw] then removed = removed + 1 else table.insert(kept, raw) end
end
if removed == 0 then return 0 end
redis.call('del', KEYS[1])
for i = 1, #kept, 1000 do
  redis.call('rpush', KEYS[1], unpack(kept, i, math.min(i + 999, #kept)))
end
return removed
"""
# KEYS[1]: the checked hash; ARGV: policy, rounds. Only ever raised.
_RAISE_CHECKED = """
local now = tonumber(redis.call('hget', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > now then redis.call('hset', KEYS[1], ARGV[1], ARGV[2]) end
"""


class StopRules:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client
        self.counters = Counters(client)
        self._note = client.register_script(_NOTE_OUTCOMES)
        self._delete = client.register_script(_DELETE_MESSAGES)
        self._raise = client.register_script(_RAISE_CHECKED)

    # ------------------------------------------------------------------ rules
    def set_rule(self, spec_sha: str, policies: Iterable[str], rule: dict[str, Any]) -> None:
        """``rule`` for the slices of ``policies``, starting afresh (no note, nothing checked)."""
        policies = list(policies)
        with self.r.pipeline() as pipe:
            pipe.hset(keys.stop_rules(spec_sha), mapping={p: json.dumps(rule) for p in policies})
            pipe.hdel(keys.stop_notes(spec_sha), *policies)
            pipe.hdel(keys.stop_checked(spec_sha), *policies)
            pipe.hset(keys.stop_cleared(spec_sha), mapping={p: repr(time.time()) for p in policies})
            pipe.execute()

    def clear_rule(self, spec_sha: str, policies: Iterable[str]) -> None:
        """No rule, note or check for ``policies`` (their stopped episodes are being sent again)."""
        policies = list(policies)
        with self.r.pipeline() as pipe:
            for name in (keys.stop_rules(spec_sha), keys.stop_notes(spec_sha), keys.stop_checked(spec_sha)):
                pipe.hdel(name, *policies)
            pipe.hset(keys.stop_cleared(spec_sha), mapping={p: repr(time.time()) for p in policies})
            pipe.execute()

    def known_stops(self, spec_sha: str) -> set[str]:
        """Policies whose stops this Redis knows: a note, or a rule set or cleared since."""
        with self.r.pipeline() as pipe:
            pipe.hkeys(keys.stop_notes(spec_sha))
            pipe.hkeys(keys.stop_cleared(spec_sha))
            notes, cleared = pipe.execute()
        return {*notes, *cleared}

    def rules(self, spec_sha: str) -> dict[str, dict[str, Any]]:
        return {p: json.loads(v) for p, v in self.r.hgetall(keys.stop_rules(spec_sha)).items()}

    def rule(self, spec_sha: str, policy: str) -> dict[str, Any] | None:
        raw = self.r.hget(keys.stop_rules(spec_sha), policy)
        return json.loads(raw) if raw else None

    # ------------------------------------------------------------------ outcomes
    def note_outcomes(self, spec_sha: str, outcomes: list[tuple[str, str]]) -> dict[str, int]:
        """(episode id, '1' | '0' | 'e') of records written; noted for policies with a rule, whose
        counts of noted outcomes come back."""
        if not outcomes:
            return {}
        reply = self._note(keys=[keys.stop_rules(spec_sha), keys.outcomes(spec_sha), keys.outcome_counts(spec_sha)],
                           args=[part for pair in outcomes for part in pair])
        return {reply[i]: int(reply[i + 1]) for i in range(0, len(reply), 2)}

    def outcomes_of(self, spec_sha: str, episode_ids: list[str]) -> list[str | None]:
        found: list[str | None] = []
        for start in range(0, len(episode_ids), 10_000):
            found += self.r.hmget(keys.outcomes(spec_sha), episode_ids[start:start + 10_000])
        return found

    # ------------------------------------------------------------------ checks and stops
    def checked(self, spec_sha: str, policy: str) -> int:
        return int(self.r.hget(keys.stop_checked(spec_sha), policy) or 0)

    def raise_checked(self, spec_sha: str, policy: str, rounds: int) -> None:
        self._raise(keys=[keys.stop_checked(spec_sha)], args=[policy, rounds])

    def note_stop(self, spec_sha: str, policies: list[str], note: dict[str, Any]) -> dict[str, Any]:
        """Keep ``note`` for ``policies`` unless one is kept already; returns the kept one (the
        first checker's: every machine writes the same note file)."""
        with self.r.pipeline() as pipe:
            for policy in policies:
                pipe.hsetnx(keys.stop_notes(spec_sha), policy, json.dumps(note, sort_keys=True))
            pipe.hget(keys.stop_notes(spec_sha), policies[0])
            kept = pipe.execute()[-1]
        return json.loads(kept)

    def notes(self, spec_sha: str) -> dict[str, dict[str, Any]]:
        return {p: json.loads(v) for p, v in self.r.hgetall(keys.stop_notes(spec_sha)).items()}

    def withdraw(self, spec_sha: str, queue: str, episode_ids: list[str]) -> int:
        """Stop the episodes of ``episode_ids`` that are enqueued (or stopped), not done and not
        claimed, then delete their waiting messages. Returns how many are stopped."""
        ids: list[str] = []
        for start in range(0, len(episode_ids), 10_000):
            chunk = episode_ids[start:start + 10_000]
            with self.r.pipeline(transaction=False) as pipe:
                pipe.hmget(keys.enqueued(spec_sha), chunk)
                pipe.smismember(keys.stopped(spec_sha), chunk)
                pipe.smismember(keys.done(spec_sha), chunk)
                for episode_id in chunk:
                    pipe.exists(keys.claim(episode_id))
                sent, stopped, done, *claimed = pipe.execute()
            # Stopped already: an earlier withdrawal killed before it deleted the messages.
            ids += [i for i, s, st, d, c in zip(chunk, sent, stopped, done, claimed, strict=True)
                    if (s or st) and not d and not c]
        # Stopped first: a message delivered from now on is acknowledged unrun at its claim.
        self.counters.withdraw(spec_sha, ids)
        make_task_id = task_id_maker(spec_sha)
        doomed_ids = {make_task_id(i) for i in ids}
        for key in keys.queue_keys(queue):
            doomed = [raw for raw in self.r.lrange(key, 0, -1) if _task_id(raw) in doomed_ids]
            for start in range(0, len(doomed), 5000):
                self._delete(keys=[key], args=doomed[start:start + 5000])
        return len(ids)


def _task_id(raw: str) -> str | None:
    """A waiting message's task id; None for one that is not a task message (left alone)."""
    try:
        return queued_task_id(raw)
    except (ValueError, KeyError, TypeError):
        return None
