"""Where the fleet's episode time goes, per (spec, policy, machine): sums kept in Redis for
``producer status`` (``benchmark/records/time_use.py`` says what they mean; the report sums
the records themselves).

``keys.time_use(sha)`` is a hash with fields ``<policy>|<machine>|<sum>``, one per name of
``SUMS``, added to by one script call per record in the pipeline that marks it finished.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from benchmark.records.time_use import SUMS, TimeUse
from worker.queue import keys

_ADD = "for i = 2, #ARGV, 2 do redis.call('hincrbyfloat', KEYS[1], ARGV[1] .. ARGV[i], ARGV[i + 1]) end"


def add(pipe: redis.client.Pipeline, spec_sha: str, policy: str, machine: str, sums: Sequence[float]) -> None:
    pairs = [item for name, value in zip(SUMS, sums, strict=True) if value for item in (name, repr(value))]
    pipe.eval(_ADD, 1, keys.time_use(spec_sha), f"{policy}|{machine}|", *pairs)


def read(client: redis.Redis, spec_sha: str) -> dict[tuple[str, str], TimeUse]:
    """(policy, machine) -> its sums."""
    found: dict[tuple[str, str], TimeUse] = {}
    for name, value in client.hgetall(keys.time_use(spec_sha)).items():
        policy, machine, field = name.rsplit("|", 2) if name.count("|") >= 2 else ("", "", "")
        if field in SUMS:
            found.setdefault((policy, machine), TimeUse()).sums[SUMS.index(field)] = float(value)
    return found
