"""The `decided` stop rule's error rate and savings, simulated (tests/stats/savings.py)."""

from __future__ import annotations

import pytest

from tests.stats.savings import simulate

pytestmark = pytest.mark.stats


def test_deciding_when_nothing_differs_is_rare_and_a_real_difference_stops_early():
    assert simulate(0.0, 500)["wrong"] <= 0.05  # measured 0.000
    found = simulate(0.05, 200)
    assert found["decided"] >= 0.95 and found["wrong"] <= 0.05 and found["saved"] >= 0.5  # measured 74% saved
