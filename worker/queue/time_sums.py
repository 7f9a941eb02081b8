"""Where the fleet's episode time goes, per (spec, policy, machine): sums kept in Redis for
``producer status`` (``benchmark/records/time_use.py`` says what they mean; the report sums
the records themselves).

``keys.time_use(sha)`` is a hash with fields ``<policy>|<machine>|<sum>``, one per name of
``SUMS``, added to by the script that marks a record finished (``counters.FINISH``).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from benchmark.records.time_use import SUMS, TimeUse
from worker.queue import keys


def finish_args(policy: str, machine: str, sums: Sequence[float]) -> list[str | int]:
    """The FINISH script's time-use arguments of one record (``counters.FINISH``): the field
    prefix, then the count and the (name, value) pairs of its sums that are not zero."""
    pairs = [item for name, value in zip(SUMS, sums, strict=True) if value for item in (name, repr(value))]
    return [f"{policy}|{machine}|", len(pairs) // 2, *pairs]


def read(client: redis.Redis, spec_sha: str) -> dict[tuple[str, str], TimeUse]:
    """(policy, machine) -> its sums."""
    found: dict[tuple[str, str], TimeUse] = {}
    for name, value in client.hgetall(keys.time_use(spec_sha)).items():
        policy, machine, field = name.rsplit("|", 2) if name.count("|") >= 2 else ("", "", "")
        if field in SUMS:
            found.setdefault((policy, machine), TimeUse()).sums[SUMS.index(field)] = float(value)
    return found
