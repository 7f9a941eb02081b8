"""What a `decided` stop rule saves (issue 27): two policies on the lm20 slice (10 settings x
50 tasks, 20 rounds), the rule checked after every round as workers check it: `decided:b,a`,
stop when the paired confidence sequence of the overall difference excludes 0
(reporting.stop_rule.evaluate, on the records' counts).

Per slot (setting, task), policy a's success probability is logit-normal around 0.6 (task
spread sd 1.2 as in docs/statistics.md, plus a setting effect of sd 0.5); b's is a's shifted
on the logit scale so that b's mean is `difference` higher. Outcomes are independent draws
(no common seeds: the worst case for a paired test). Prints, per difference: the share of
episodes the rule saves, how often it decides, and how often it decides wrongly (any
decision at difference 0; "a better" otherwise).

    .venv/bin/python tests/stats/savings.py [--runs 400]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from reporting.stop_rule import evaluate, parse_stop_rule

SETTINGS, TASKS, ROUNDS = 10, 50, 20  # lm20: its 10 lm settings
RATE, TASK_SPREAD, SETTING_SPREAD = 0.6, 1.2, 0.5
DIFFERENCES = (0.0, 0.05, 0.10, 0.20)
RULE = parse_stop_rule("decided:b,a", ["a", "b"])
SETTING_IDS = [f"setting_{i}" for i in range(SETTINGS)]


def shifted(logits: np.ndarray, difference: float) -> np.ndarray:
    """Probabilities of ``logits`` shifted so that their mean rises by ``difference``."""
    base = 1 / (1 + np.exp(-logits))
    low, high = 0.0, 10.0
    for _ in range(50):  # bisection on the shift
        middle = (low + high) / 2
        if (1 / (1 + np.exp(-(logits + middle)))).mean() - base.mean() < difference:
            low = middle
        else:
            high = middle
    return 1 / (1 + np.exp(-(logits + (low + high) / 2)))


def one_run(rng: np.random.Generator, difference: float) -> tuple[int, int]:
    """(the round after which the rule stopped, or ROUNDS; the decision: 0 none, 1 b better,
    -1 a better)."""
    logits = (math.log(RATE / (1 - RATE)) + TASK_SPREAD * rng.standard_normal(TASKS)[None, :]
              + SETTING_SPREAD * rng.standard_normal(SETTINGS)[:, None]).ravel()
    a = 1 / (1 + np.exp(-logits))
    b = shifted(logits, difference) if difference else a
    solved = {"b": rng.random((ROUNDS, a.size)) < b, "a": rng.random((ROUNDS, a.size)) < a}
    # settings x tasks x repeats, as the records' counts are
    solved = {p: s.reshape(ROUNDS, SETTINGS, TASKS).transpose(1, 2, 0) for p, s in solved.items()}
    for looked in range(1, ROUNDS + 1):
        completed = np.zeros((SETTINGS, TASKS, ROUNDS), bool)
        completed[..., :looked] = True
        verdict = evaluate(RULE, {p: (completed, completed, s & completed) for p, s in solved.items()},
                           SETTING_IDS)["b"]
        if verdict.holds:  # the sequence excludes 0: the estimate inside it has the decision's sign
            return looked, 1 if (solved["b"] & completed).sum() > (solved["a"] & completed).sum() else -1
    return ROUNDS, 0


def simulate(difference: float, runs: int, seed: int = 27) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    stops, decisions = zip(*(one_run(rng, difference) for _ in range(runs)), strict=True)
    decided = sum(1 for d in decisions if d)
    wrong = sum(1 for d in decisions if d and (difference == 0 or d < 0))
    return {"saved": 1 - float(np.mean(stops)) / ROUNDS, "decided": decided / runs, "wrong": wrong / runs,
            "median_stop": float(np.median(stops))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    args = parser.parse_args()
    print(f"{args.runs} simulated runs a row; lm20: {SETTINGS} settings x {TASKS} tasks, {ROUNDS} rounds")
    print("| difference | episodes saved | decided | decided wrongly | median stop (round) |")
    print("|---|---|---|---|---|")
    for difference in DIFFERENCES:
        found = simulate(difference, args.runs)
        print(f"| {difference:.2f} | {found['saved']:.0%} | {found['decided']:.2f} | {found['wrong']:.3f} | "
              f"{found['median_stop']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
