"""The policies the fleet can run: each worker announces the names it can load (built-ins, entry
points, its policies file) in Redis, when it is ready and then every few minutes on Celery's
heartbeat (``worker/__main__.py``); ``producer enqueue`` refuses a name that no worker announced in the last
``RECENT_S`` seconds and this machine cannot load either, instead of sending thousands of
messages that all end as dead letters. A hub whose workers have not started yet passes
``--allow-unknown-policy``.
"""

from __future__ import annotations

import difflib
import json
import logging
import textwrap
import time
from dataclasses import dataclass

import redis

from benchmark.policies import available_policies
from benchmark.policies.policies_file import PoliciesFile
from worker.queue import keys

log = logging.getLogger(__name__)

RECENT_S = 30 * 86400  # a worker seen in the last 30 days still counts (a fleet off for a while)
ANNOUNCE_EVERY_S = 300.0


def loadable_policies(policies_file: PoliciesFile | None) -> list[str]:
    """The names a process with this policies file can load, as ``load_policy`` finds them."""
    return sorted({*available_policies(), *(policies_file.entries if policies_file else ())})


@dataclass
class Announcer:
    client: redis.Redis
    worker: str
    machine: str
    names: list[str]
    _announced: float = float("-inf")

    def announce(self) -> None:
        """At most every ``ANNOUNCE_EVERY_S``; a Redis hiccup waits for the next heartbeat."""
        now = time.time()
        if now - self._announced < ANNOUNCE_EVERY_S or not self.names:
            return
        seen = json.dumps({"worker": self.worker, "machine": self.machine, "time": now})
        try:
            self.client.hset(keys.FLEET_POLICIES, mapping=dict.fromkeys(self.names, seen))
        except redis.RedisError as exc:
            log.warning("could not announce this worker's policies: %s", exc)
            return
        self._announced = now


def fleet_policies(client: redis.Redis, within_s: float = RECENT_S) -> dict[str, dict]:
    """Policy -> who announced it last (worker, machine, time), for announcements within ``within_s``."""
    found = {}
    now = time.time()
    for name, raw in client.hgetall(keys.FLEET_POLICIES).items():
        try:
            seen = json.loads(raw)
            if now - float(seen["time"]) <= within_s:
                found[name] = seen
        except (ValueError, TypeError, KeyError):
            continue  # not ours to judge: an unreadable entry is simply not a known name
    return found


def unknown_policy_message(unknown: list[str], known: list[str], fleet_empty: bool) -> str:
    """The refusal: the first line names the policies (and the closest known names), then the
    known names and what to do, every line within 80 columns."""
    guesses = [f"{name!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(name, known, 1))
               else repr(name) for name in unknown]
    noun = "policy" if len(unknown) == 1 else "policies"
    # Click prints "Error: " before it.
    first = textwrap.fill(f"unknown {noun} {', '.join(guesses)}", 71, subsequent_indent="  ")
    why = ("no worker has announced its policies yet" if fleet_empty
           else "no worker announced it and this machine cannot load it")
    body = textwrap.fill(f"{why}; known: {', '.join(known)}. Start a worker that has it, or pass "
                         "--allow-unknown-policy to enqueue for workers not started yet.", 78,
                         initial_indent="  ", subsequent_indent="  ", break_on_hyphens=False)
    return f"{first}\n{body}"
