"""The tables of docs/statistics.md, measured: coverage of every interval a report carries, and
the power to see a difference of 5 points between two policies.

    .venv/bin/python tests/stats/tables.py     # about a minute

Coverage: the simulation of tests/stats/test_coverage.py (20 repeats a task, task probabilities
logit-normal around a rate with spread sd; "these tasks": tasks drawn once and kept, "tasks like
these": tasks drawn per benchmark), for the named intervals and for today's two (a Wilson
interval of the pooled episodes, a percentile bootstrap over tasks).

Power: policy a's tasks logit-normal around 0.6 with sd 1.2, policy b the same tasks shifted on
the logit scale so that b is 5 points better on average; each episode an independent draw. A
difference is "seen" when its 95% interval excludes 0: on these tasks (Newcombe, paired by
episode) or over tasks (t interval, paired by task).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from reporting.stats import (
    cluster_bootstrap_rows,
    on_these_tasks_rows,
    over_tasks_rows,
    paired_difference,
    paired_over_tasks,
    wilson_many,
)
from tests.stats.test_coverage import (
    CONFIGURATIONS,
    REPEATS,
    coverage_on_these_tasks,
    coverage_over_tasks,
    expit,
    seed_of,
)


def pooled_wilson_rows(successes, n):
    low, high = wilson_many(successes.sum(axis=1), n.sum(axis=1))
    return None, low, high, None


def bootstrap_rows(successes, n):
    low, high = cluster_bootstrap_rows(successes, n)
    return None, low, high, None


def coverage_table() -> None:
    print("| rate | sd | tasks | on_these_tasks: these tasks | over_tasks: tasks like these | "
          "Wilson (pooled): these / like these | bootstrap over tasks: these / like these |")
    print("|---|---|---|---|---|---|---|")
    for rate, sd, tasks in CONFIGURATIONS:
        seed = seed_of(rate, sd, tasks)
        cells = [coverage_on_these_tasks(on_these_tasks_rows, rate, sd, tasks, seed),
                 coverage_over_tasks(over_tasks_rows, rate, sd, tasks, seed)]
        old = [(coverage_on_these_tasks(f, rate, sd, tasks, seed), coverage_over_tasks(f, rate, sd, tasks, seed))
               for f in (pooled_wilson_rows, bootstrap_rows)]
        print(f"| {rate} | {sd} | {tasks} | {cells[0]:.3f} | {cells[1]:.3f} | "
              + " | ".join(f"{a:.3f} / {b:.3f}" for a, b in old) + " |")


def shift_for(difference: float, rate: float, sd: float) -> float:
    """The logit shift that makes the mean task probability ``difference`` higher."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(120)
    base = math.log(rate / (1 - rate)) + sd * nodes

    def mean(shift: float) -> float:
        return float((weights * expit(base + shift)).sum() / weights.sum())

    low, high, target = 0.0, 5.0, mean(0.0) + difference
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if mean(middle) < target else (low, middle)
    return (low + high) / 2


def power_table(difference: float = 0.05, rate: float = 0.6, sd: float = 1.2, benchmarks: int = 1000) -> None:
    shift = shift_for(difference, rate, sd)
    print("| tasks | repeats | episodes a policy | seen on these tasks (paired by episode) | "
          "seen over tasks (paired by task) |")
    print("|---|---|---|---|---|")
    for tasks in (10, 20, 50):
        for repeats in (10, 20, 50):
            rng = np.random.default_rng(7 * tasks + repeats)
            logits = math.log(rate / (1 - rate)) + sd * rng.standard_normal((benchmarks, tasks))
            a = rng.random((benchmarks, tasks, repeats)) < expit(logits)[..., None]
            b = rng.random((benchmarks, tasks, repeats)) < expit(logits + shift)[..., None]
            seen_episode = seen_task = 0
            for i in range(benchmarks):
                x, y = a[i], b[i]
                _, low, _ = paired_difference(int((x & y).sum()), int((~x & y).sum()), int((x & ~y).sum()),
                                                 int((~x & ~y).sum()))  # b - a: b first
                seen_episode += low > 0
                over = paired_over_tasks((y.mean(axis=1) - x.mean(axis=1)).tolist())
                seen_task += over is not None and not math.isnan(over[1]) and over[1] > 0
            print(f"| {tasks} | {repeats} | {tasks * repeats:,} | {seen_episode / benchmarks:.2f} | "
                  f"{seen_task / benchmarks:.2f} |")


if __name__ == "__main__":
    print(f"## Coverage ({REPEATS} repeats a task)\n")
    coverage_table()
    print("\n## Power: a difference of 5 points (rate 0.6, task sd 1.2)\n")
    power_table()
