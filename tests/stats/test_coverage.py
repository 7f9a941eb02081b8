"""Do the report's 95% intervals hold 95%? A coverage simulation against the report's own
functions (reporting.stats), seeded, and a check of the building blocks against reference
values from statsmodels and scipy (computed once, kept here as data).

The simulation (docs/statistics.md): 20 repeats a task, task success probabilities
logit-normal around a rate (0.1, 0.6, 0.95) with spread sd (0 or 1.2), 4, 10 or 50 tasks.

- "on these tasks": the tasks are drawn once and kept (20 draws a configuration, 1,000
  benchmarks each); the truth is the mean of those tasks' probabilities.
- "over tasks": every benchmark draws its own tasks (20,000 benchmarks); the truth is the mean
  probability of the task distribution.

The bands are the issue's, widened by three standard errors of the simulation itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from reporting.stats import (
    on_these_tasks_rows,
    over_tasks_rows,
    paired_over_tasks,
    t_quantile,
    wilson,
)

pytestmark = pytest.mark.stats

REPEATS = 20
RATES, SPREADS, TASKS = (0.1, 0.6, 0.95), (0.0, 1.2), (4, 10, 50)
FIXED_DRAWS, PER_DRAW = 20, 1000
BENCHMARKS = FIXED_DRAWS * PER_DRAW
TOLERANCE = 3 * math.sqrt(0.95 * 0.05 / BENCHMARKS)  # ~0.005
ON_THESE_BAND = (0.93, 0.97)
# From FEW_TASKS tasks up (the floor). With 4 tasks it holds here too (0.943 at least),
# but tasks spread more than these would take it lower: reports call it approximate below 10.
OVER_FLOOR = 0.92


def expit(x):
    return 1 / (1 + np.exp(-x))


def task_probabilities(rng, rate: float, sd: float, shape) -> np.ndarray:
    return expit(math.log(rate / (1 - rate)) + sd * rng.standard_normal(shape))


def mean_of_distribution(rate: float, sd: float) -> float:
    """E[expit(logit(rate) + sd Z)], Z standard normal (Gauss-Hermite, 120 points)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(120)
    return float((weights * expit(math.log(rate / (1 - rate)) + sd * nodes)).sum() / weights.sum())


def covered(interval_rows, successes: np.ndarray, truth) -> np.ndarray:
    _, low, high, _ = interval_rows(successes, np.full(successes.shape, REPEATS))
    return (low <= truth) & (truth <= high)


def coverage_on_these_tasks(interval_rows, rate: float, sd: float, tasks: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    hits = []
    for _ in range(FIXED_DRAWS):
        p = task_probabilities(rng, rate, sd, tasks)
        hits.append(covered(interval_rows, rng.binomial(REPEATS, p, size=(PER_DRAW, tasks)), p.mean()))
    return float(np.concatenate(hits).mean())


def coverage_over_tasks(interval_rows, rate: float, sd: float, tasks: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    p = task_probabilities(rng, rate, sd, (BENCHMARKS, tasks))
    return float(covered(interval_rows, rng.binomial(REPEATS, p), mean_of_distribution(rate, sd)).mean())


CONFIGURATIONS = [(rate, sd, tasks) for rate in RATES for sd in SPREADS for tasks in TASKS]


def seed_of(rate: float, sd: float, tasks: int) -> int:
    return 20261130 + int(rate * 100) * 1000 + int(sd * 10) * 100 + tasks


@pytest.mark.parametrize(("rate", "sd", "tasks"), CONFIGURATIONS)
def test_on_these_tasks_holds_95_percent_and_is_not_wider_than_it_needs(rate, sd, tasks):
    coverage = coverage_on_these_tasks(on_these_tasks_rows, rate, sd, tasks, seed_of(rate, sd, tasks))
    low, high = ON_THESE_BAND
    assert low - TOLERANCE <= coverage <= high + TOLERANCE, f"coverage {coverage:.3f}"


@pytest.mark.parametrize(("rate", "sd", "tasks"), CONFIGURATIONS)
def test_over_tasks_holds_95_percent_with_few_tasks(rate, sd, tasks):
    coverage = coverage_over_tasks(over_tasks_rows, rate, sd, tasks, seed_of(rate, sd, tasks))
    assert coverage >= OVER_FLOOR - TOLERANCE, f"coverage {coverage:.3f}"


@pytest.mark.parametrize("tasks", TASKS)
def test_each_interval_fails_the_other_question(tasks):
    """Swapped, the bands above catch them: with tasks that differ (sd 1.2), the over-tasks
    interval is too wide for "these tasks", and the on-these-tasks one far too narrow for
    "tasks like these"."""
    seed = seed_of(0.6, 1.2, tasks)
    assert coverage_on_these_tasks(over_tasks_rows, 0.6, 1.2, tasks, seed) > ON_THESE_BAND[1] + TOLERANCE
    assert coverage_over_tasks(on_these_tasks_rows, 0.6, 1.2, tasks, seed) < OVER_FLOOR - TOLERANCE


# Reference values, computed with statsmodels 0.15.0 and scipy 1.17.1 (test data only):
#   proportion_confint(k, n, alpha=0.05, method="wilson")
WILSON = {(0, 20): (0.0, 0.1611251580528194), (7, 20): (0.18119182410108203, 0.5671457233147638),
          (20, 20): (0.8388748419471804, 0.9999999999999999), (612, 1000): (0.5814239245764211, 0.6417188815228144),
          (1, 3): (0.06149194472039626, 0.7923403991979523)}
#   DescrStatsW(d).tconfint_mean(alpha=0.05)
T_INTERVALS = [([0.05, -0.10, 0.20, 0.0], (-0.16140289408023173, 0.23640289408023174)),
               ([0.1, 0.15, 0.05, 0.2, 0.1, 0.0, 0.05, 0.1, 0.15, 0.1], (0.0586988497771179, 0.14130115022288212))]
#   scipy.stats.t.ppf(0.975, df)
T_975 = {1: 12.706204736174694, 3: 3.1824463052837078, 9: 2.262157162798205, 49: 2.0095752371292392}


@pytest.mark.parametrize(("counts", "expected"), WILSON.items())
def test_wilson_and_one_task_on_these_tasks_equal_statsmodels(counts, expected):
    assert wilson(*counts) == pytest.approx(expected, abs=1e-12)
    rate, low, high, tasks = on_these_tasks_rows(np.array([[counts[0]]]), np.array([[counts[1]]]))
    assert rate[0] == pytest.approx(counts[0] / counts[1])
    assert tasks[0] == 1 and (low[0], high[0]) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("differences", "expected"), T_INTERVALS)
def test_paired_over_tasks_equals_statsmodels_t_interval(differences, expected):
    mean, low, high = paired_over_tasks(differences)
    assert mean == pytest.approx(float(np.mean(differences))) and (low, high) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(("df", "expected"), T_975.items())
def test_t_quantile_equals_scipy(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, rel=1e-12)


def test_over_tasks_is_the_wilson_t_interval_of_the_task_rates():
    """Worked by hand: task rates 0.5, 0.7, 0.9, 1.0 (20 repeats): mean 0.775, variance of the
    rates 0.049167 / 4 tasks, effective n = 0.775 x 0.225 / 0.012292 = 14.19, t(3) = 3.1824."""
    rate, low, high, tasks = over_tasks_rows(np.array([[10, 14, 18, 20]]), np.full((1, 4), 20))
    n_eff = 0.775 * 0.225 / (np.var([0.5, 0.7, 0.9, 1.0], ddof=1) / 4)
    t = T_975[3]
    centre = (0.775 + t * t / (2 * n_eff)) / (1 + t * t / n_eff)
    half = t * math.sqrt(0.775 * 0.225 / n_eff + t * t / (4 * n_eff * n_eff)) / (1 + t * t / n_eff)
    assert tasks[0] == 4 and rate[0] == pytest.approx(0.775)
    assert (low[0], high[0]) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert paired_over_tasks([0.25]) is None and math.isnan(over_tasks_rows(np.array([[3]]), np.array([[20]]))[1][0])
