"""Every Redis key rtbench and kombu use, named once.

rtbench's keys (``rtbench:`` prefix; ``<sha>`` is a spec's sha256, ``<id>`` an episode id):

- ``claim:<id>``       who runs the episode now; expires unless its heartbeat renews it
- ``attempts:<id>``    how many times a worker started it (deaths and failures included)
- ``last_error:<id>``  why the previous start did not finish
- ``done:<sha>``       set of episodes with a done record (valid, or a deterministic error)
- ``finished:<sha>``   zset id -> time a delivery ended with a record (progress rate, ``producer run``)
- ``enqueued:<sha>``   hash id -> publish time (idempotent ``enqueue``, stale detection)
- ``given_up:<sha>``   set of episodes whose retries ran out, not sent again since (``counters.py``)
- ``stopped:<sha>``    set of episodes whose messages were withdrawn before they ran, not sent
                       again since (``counters.py``)
- ``finished_on:<sha>`` hash id -> the machine that wrote its record (``enqueue --reconcile``
                       waits for that machine's sync before it calls a missing record lost)
- ``enqueue_fp:<sha>`` hash policy -> digest of the policy's record folders at its last full
                       enqueue (``producer/enqueue.py``: a re-enqueue with nothing new is cheap)
- ``enqueue_lock:<sha>`` held by the ``enqueue`` planning and sending for the spec (two
                       producers at once would both send what neither saw enqueued); expires
- ``counts:<sha>``     hash of per-policy counters of the two sets above (``counters.py``): status
                       reads these, not the sets
- ``time_use:<sha>``   hash ``<policy>|<machine>|<sum>`` -> seconds (episodes, wall, GPU and
                       each phase) of the records written (``time_sums.py``): status's duty cycle
- ``dead``             list of dead letters (JSON: reason, detail, message, episode, worker, time)
- ``blocked:<worker>`` why a worker stopped taking episodes (its results folder is not writable);
                       kept alive by the worker's probe, deleted when the folder is writable again
- ``sync:<machine>``   hash: the machine's last sync (time, commit, records) and last sync error
- ``sync_pushes:<minute>`` pushes of the whole fleet in one minute (the push budget); expires
- ``sync_push_waiters`` zset machine -> when it began waiting for a push slot (its first ask
                       since its last push): the fleet's line for the push budget, oldest
                       first, so a machine that asks rarely still reaches the front; expires
                       when nobody asks
- ``sync_push_asks``   hash machine -> when its place in that line lapses (its last ask plus its
                       own patience): a crashed machine must not hold the front forever
- ``policy_server:<address>`` the worker that leased a policy server (JSON: worker, policy,
                       machine); renewed while the worker lives (``worker/server_leases.py``)
- ``fleet_policies``   hash policy -> the last worker that announced it can load it (JSON:
                       worker, machine, time); ``producer enqueue`` refuses other names
                       (``fleet_policies.py``)
- ``media_budget``     hash machine -> its media folder's use against RTBENCH_MEDIA_BUDGET (JSON:
                       used, budget, media_dir, time); ``producer status`` warns of a full one
                       (``media_budget.py``)
- ``stop_rules:<sha>`` hash policy -> the stop rule its slice was enqueued with (JSON: rule,
                       policies, queue, settings, tasks, set_at; ``stop_rules.py``)
- ``outcomes:<sha>``   hash id -> '1' success, '0' failure, 'e' error, for the episodes of
                       policies with a stop rule (the rule is checked on them)
- ``outcome_counts:<sha>`` hash policy -> episodes in ``outcomes:<sha>``
- ``stop_checked:<sha>`` hash policy -> the completed rounds its rule was last checked on
- ``stop_notes:<sha>`` hash policy -> why its slice stopped (JSON: rule, after_round, ...);
                       the first note wins, ``enqueue --resume-stopped`` deletes it
- ``stop_cleared:<sha>`` hash policy -> when its rule was set or cleared by an enqueue: Redis
                       knows that slice's stops (a note beside the records without either is
                       a stop this Redis forgot: ``enqueue`` restores it)
- ``expert:<digest>``  an expert check's verdict for one scene (JSON), shared by the fleet
                       (``verdicts.py``, benchmark/run/expert_verdicts.py); the digest is a
                       sha256 of the backend's key (task, env seed, simulator provenance)

kombu's Redis layout (what Celery workers consume): one list per queue and priority bucket,
and the ``unacked`` hash of delivered, unacknowledged messages.
"""

from __future__ import annotations

import hashlib

PREFIX = "rtbench:"
DEAD = f"{PREFIX}dead"
FLEET_POLICIES = f"{PREFIX}fleet_policies"
MEDIA_BUDGET = f"{PREFIX}media_budget"

PRIORITY_STEPS = (0, 3, 6, 9)    # kombu's Redis priority buckets
PRIORITY_SEPARATOR = "\x06\x16"  # kombu's Redis queue-name separator for priority buckets
UNACKED = "unacked"              # kombu's hash of delivered, unacknowledged messages


def claim(episode_id: str) -> str:
    return f"{PREFIX}claim:{episode_id}"


def attempts(episode_id: str) -> str:
    return f"{PREFIX}attempts:{episode_id}"


def last_error(episode_id: str) -> str:
    return f"{PREFIX}last_error:{episode_id}"


def done(spec_sha: str) -> str:
    return f"{PREFIX}done:{spec_sha}"


def finished(spec_sha: str) -> str:
    return f"{PREFIX}finished:{spec_sha}"


def enqueued(spec_sha: str) -> str:
    return f"{PREFIX}enqueued:{spec_sha}"


def given_up(spec_sha: str) -> str:
    return f"{PREFIX}given_up:{spec_sha}"


def stopped(spec_sha: str) -> str:
    return f"{PREFIX}stopped:{spec_sha}"


def stop_rules(spec_sha: str) -> str:
    return f"{PREFIX}stop_rules:{spec_sha}"


def outcomes(spec_sha: str) -> str:
    return f"{PREFIX}outcomes:{spec_sha}"


def outcome_counts(spec_sha: str) -> str:
    return f"{PREFIX}outcome_counts:{spec_sha}"


def stop_checked(spec_sha: str) -> str:
    return f"{PREFIX}stop_checked:{spec_sha}"


def stop_notes(spec_sha: str) -> str:
    return f"{PREFIX}stop_notes:{spec_sha}"


def stop_cleared(spec_sha: str) -> str:
    return f"{PREFIX}stop_cleared:{spec_sha}"


def finished_on(spec_sha: str) -> str:
    return f"{PREFIX}finished_on:{spec_sha}"


def counts(spec_sha: str) -> str:
    return f"{PREFIX}counts:{spec_sha}"


def time_use(spec_sha: str) -> str:
    return f"{PREFIX}time_use:{spec_sha}"


def enqueue_lock(spec_sha: str) -> str:
    return f"{PREFIX}enqueue_lock:{spec_sha}"


def enqueue_fingerprint(spec_sha: str) -> str:
    return f"{PREFIX}enqueue_fp:{spec_sha}"


def blocked(worker: str) -> str:
    return f"{PREFIX}blocked:{worker}"


def sync_status(machine: str) -> str:
    return f"{PREFIX}sync:{machine}"


def sync_pushes(minute: int) -> str:
    return f"{PREFIX}sync_pushes:{minute}"


def policy_server(address: str) -> str:
    return f"{PREFIX}policy_server:{address}"


def expert_verdict(key: str) -> str:
    return f"{PREFIX}expert:{hashlib.sha256(key.encode()).hexdigest()}"


# The push budget's waiting line (``QueueState.take_push_slot``): without it the first to ask
# in each minute took the slots, and a machine whose cycle fell late in the minute starved.
SYNC_PUSH_WAITERS = f"{PREFIX}sync_push_waiters"
SYNC_PUSH_ASKS = f"{PREFIX}sync_push_asks"


CLAIM_PATTERN, ENQUEUED_PATTERN, BLOCKED_PATTERN = claim("*"), enqueued("*"), blocked("*")
SYNC_STATUS_PATTERN = sync_status("*")


def queue_key(queue: str, priority: int) -> str:
    """The Redis list kombu consumes for ``priority`` (0 is served first)."""
    bucket = max(step for step in PRIORITY_STEPS if step <= priority)
    return queue if bucket == 0 else f"{queue}{PRIORITY_SEPARATOR}{bucket}"


def queue_keys(queue: str) -> list[str]:
    """Every priority bucket of ``queue``."""
    return [queue_key(queue, step) for step in PRIORITY_STEPS]
