"""Stop rules: what ``--stop-when`` accepts, and when each rule holds (reporting/stop_rule.py)."""

from __future__ import annotations

import numpy as np
import pytest

from reporting.stop_rule import DECIDED, WIDTH, StopRuleError, evaluate, parse_stop_rule

SETTINGS = ["s0", "s1"]


def counts(rates: list[float], rounds: int, repeats: int = 20, tasks: int = 10, seed: int = 0):
    """(completed, valid, successes) of ``rounds`` finished rounds, settings x tasks x repeats:
    setting i solves with probability rates[i]."""
    rng = np.random.default_rng(seed)
    shape = (len(rates), tasks, repeats)
    completed = np.zeros(shape, bool)
    completed[..., :rounds] = True
    successes = completed & (rng.random(shape) < np.array(rates)[:, None, None])
    return completed, completed.copy(), successes


def test_rules_parse_and_bad_ones_say_what_to_write():
    assert parse_stop_rule("width<0.05", ["A"]).kind == WIDTH and parse_stop_rule(" width < .1 ", ["A"]).width == 0.1
    rule = parse_stop_rule("decided:A,B,per-setting", ["A", "B", "C"])
    assert rule.kind == DECIDED and rule.pair == ("A", "B") and rule.per_setting
    assert rule.governs(["A", "B", "C"]) == ["A", "B"] and rule.stops_with("A") == ["A", "B"]
    assert parse_stop_rule("width<0.05", ["A", "B"]).stops_with("B") == ["B"]
    for text, says in [("width<0", "between 0 and 1"), ("width<1.5", "between 0 and 1"),
                       ("decided:A", "two different"), ("decided:A,A", "two different"),
                       ("decided:A,Z", "Z not enqueued"), ("decided:A,B/x", "B/x"), ("width>0.1", "not a rule")]:
        with pytest.raises((StopRuleError, ValueError), match=says):
            parse_stop_rule(text, ["A", "B"])


def test_width_holds_once_every_setting_is_narrow_enough():
    rule = parse_stop_rule("width<0.3", ["A"])
    few = evaluate(rule, {"A": counts([0.5, 0.9], 2)}, SETTINGS)["A"]
    many = evaluate(rule, {"A": counts([0.5, 0.9], 20)}, SETTINGS)["A"]
    assert not few.holds and few.rounds == 2 and "widest setting s0" in few.detail
    assert many.holds and many.rounds == 20
    none = evaluate(rule, {"A": counts([0.5, 0.9], 0)}, SETTINGS)["A"]
    assert not none.holds and none.rounds == 0


def test_an_incomplete_round_is_not_counted():
    completed, valid, successes = counts([0.5, 0.5], 5)
    completed[1, 3, 4] = valid[1, 3, 4] = successes[1, 3, 4] = False  # round 5 lacks one slot
    verdict = evaluate(parse_stop_rule("width<0.9", ["A"]), {"A": (completed, valid, successes)}, SETTINGS)["A"]
    assert verdict.rounds == 4


def test_decided_overall_and_per_setting():
    rule = parse_stop_rule("decided:A,B", ["A", "B"])
    apart = {"A": counts([0.9, 0.9], 8, seed=1), "B": counts([0.1, 0.1], 6, seed=2)}
    verdict = evaluate(rule, apart, SETTINGS)
    assert verdict["A"] == verdict["B"] and verdict["A"].holds and verdict["A"].rounds == 6  # shared rounds
    same = {"A": counts([0.5, 0.5], 20, seed=3), "B": counts([0.5, 0.5], 20, seed=4)}
    assert not evaluate(rule, same, SETTINGS)["A"].holds
    # One setting differs, the other does not: overall decides, per setting does not.
    mixed = {"A": counts([0.95, 0.5], 20, seed=5), "B": counts([0.05, 0.5], 20, seed=6)}
    assert evaluate(rule, mixed, SETTINGS)["A"].holds
    per = evaluate(parse_stop_rule("decided:A,B,per-setting", ["A", "B"]), mixed, SETTINGS)["A"]
    assert not per.holds and "1 of 2 settings undecided, e.g. s1" in per.detail
