"""The fleet's push budget (``QueueState.take_push_slot``) against a real Redis.

Time is simulated: every ask passes ``now``, so a test walks through minutes without waiting.
Minute m is [60 m, 60 m + 60) seconds, as the budget counts it.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from worker.queue.state import QueueState

PATIENT = 3600.0  # a stale_after_s no test outlives, where staleness is not the point


@pytest.fixture
def state(broker) -> QueueState:
    return QueueState(broker)


def test_one_machine_gets_the_budget_of_a_minute_and_no_more(state):
    assert [state.take_push_slot("alpha", 4, PATIENT, now=1.0 + i) for i in range(5)] == [True] * 4 + [False]
    assert state.take_push_slot("alpha", 4, PATIENT, now=60.0)  # a new minute


def test_a_budget_of_n_grants_at_most_n_pushes_a_minute(state):
    granted: Counter[int] = Counter()
    for second in range(0, 600, 3):  # ten minutes, five machines asking in turn
        machine = f"m{second % 5}"
        if state.take_push_slot(machine, 3, PATIENT, now=float(second)):
            granted[second // 60] += 1
    assert granted == {minute: 3 for minute in range(10)}  # the budget, used and never exceeded


def test_a_refused_machine_pushes_before_one_that_asks_later_for_the_first_time(state):
    assert state.take_push_slot("alpha", 1, PATIENT, now=0.0)
    assert not state.take_push_slot("beta", 1, PATIENT, now=10.0)  # minute 0 is used up: beta waits

    # Minute 1: gamma asks first, but its only slot is beta's.
    assert not state.take_push_slot("gamma", 1, PATIENT, now=61.0)
    assert not state.take_push_slot("gamma", 1, PATIENT, now=65.0)
    assert state.take_push_slot("beta", 1, PATIENT, now=70.0)
    assert not state.take_push_slot("gamma", 1, PATIENT, now=75.0)
    # Minute 2: gamma is now first in line; alpha, asking after its push, is behind it.
    assert not state.take_push_slot("alpha", 1, PATIENT, now=120.0)
    assert state.take_push_slot("gamma", 1, PATIENT, now=121.0)


def test_a_waiter_holds_back_only_the_slots_it_is_waiting_for(state):
    assert state.take_push_slot("alpha", 1, PATIENT, now=0.0)
    assert not state.take_push_slot("beta", 1, PATIENT, now=10.0)
    # Minute 1 with a budget of 2: beta's turn takes one slot, gamma may take the other.
    assert state.take_push_slot("gamma", 2, PATIENT, now=61.0)
    assert not state.take_push_slot("delta", 2, PATIENT, now=62.0)  # behind beta, one slot left
    assert state.take_push_slot("beta", 2, PATIENT, now=63.0)


def test_a_stale_waiter_does_not_block_the_others(state):
    assert state.take_push_slot("alpha", 1, 100.0, now=0.0)
    assert not state.take_push_slot("crashed", 1, 100.0, now=5.0)  # waits, then never asks again

    # While its place is fresh it goes first, as a slow machine would...
    assert not state.take_push_slot("beta", 1, 100.0, now=65.0)
    # ...but 100 s after its last ask it lapsed: beta's turn.
    assert state.take_push_slot("beta", 1, 100.0, now=125.0)

    # Back after its place lapsed, the crashed machine joins at the back of the line.
    assert not state.take_push_slot("gamma", 1, 100.0, now=150.0)
    assert not state.take_push_slot("crashed", 1, 100.0, now=181.0)
    assert state.take_push_slot("gamma", 1, 100.0, now=182.0)


def test_a_machine_keeps_its_place_for_its_own_patience_not_anothers(state):
    assert state.take_push_slot("fast", 1, 60.0, now=0.0)
    assert not state.take_push_slot("slow", 1, 900.0, now=30.0)  # asks every 10 minutes
    for second in range(60, 600, 20):  # the fast machine's shorter patience does not drop it
        assert not state.take_push_slot("fast", 1, 60.0, now=float(second))
    assert state.take_push_slot("slow", 1, 900.0, now=630.0)
    assert state.take_push_slot("fast", 1, 60.0, now=660.0)


def test_no_machine_starves_when_the_fleet_asks_for_more_than_the_budget(state):
    """Four machines with sync intervals from 10 s to 150 s, two of them asking late in the
    minute, always something to push: they ask for about 7 pushes a minute against 2."""
    per_minute, minutes = 2, 40
    machines = {"every10s": (10, 0), "every25s": (25, 5), "every60s_late": (60, 50), "every150s_late": (150, 55)}
    granted: dict[str, list[float]] = defaultdict(list)
    for second in range(minutes * 60):
        for name, (interval, offset) in machines.items():
            if second >= offset and (second - offset) % interval == 0:
                stale_after = 2 * interval + 60  # what the sync passes for its own interval
                if state.take_push_slot(name, per_minute, stale_after, now=float(second)):
                    granted[name].append(second)

    per_minute_used = Counter(int(second // 60) for times in granted.values() for second in times)
    assert max(per_minute_used.values()) <= per_minute
    window = 6  # minutes: the slowest machine waits at most two of its intervals, plus its turn
    for name in machines:
        for start in range(0, minutes - window + 1):
            assert any(start * 60 <= second < (start + window) * 60 for second in granted[name]), (
                f"{name} got no push slot in minutes {start}-{start + window}: {granted[name]}")


def test_without_a_time_the_budget_runs_on_redis_clock(state, broker):
    minute_before = broker.time()[0] // 60
    first, second = state.take_push_slot("alpha", 1, PATIENT), state.take_push_slot("alpha", 1, PATIENT)
    if broker.time()[0] // 60 == minute_before:  # both asks fell in one minute of Redis's clock
        assert (first, second) == (True, False)
    # A simulated time a day ahead is another minute: its budget is untouched.
    assert state.take_push_slot("alpha", 1, PATIENT, now=broker.time()[0] + 86_400.0)
