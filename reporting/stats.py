"""Intervals and paired comparisons for success rates (pure functions).

Two questions, two intervals (docs/statistics.md):

- ``on_these_tasks_rows``: how good is the policy on *these* tasks (the tasks are fixed; only
  the repeats are random): the mean of the task rates, with a Wilson interval whose sample size
  is the effective one of the stratified (per-task binomial) variance.
- ``over_tasks_rows``: how good is it on tasks *like these* (the tasks are a draw too): the
  same mean, with a Wilson interval whose sample size is the effective one of the variance
  between task rates and whose quantile is Student's t with tasks - 1 degrees of freedom, so
  that it holds with few tasks.
- ``paired_over_tasks``: the difference of two policies over tasks, paired by task (a t interval).

And the intervals of today's report, kept for compatibility:

- ``wilson``: the Wilson score interval of k successes in n trials (``wilson_many``: of arrays).
- ``cluster_bootstrap``: a percentile bootstrap that resamples whole clusters (tasks), because
  the repeats of one task share one scene and are not independent; naive intervals are too
  narrow. Deterministic: a fixed seed. ``cluster_bootstrap_rows``: of many groups at once.
- ``paired_difference``: Newcombe's interval (method 10) for the difference of two paired
  proportions, and ``mcnemar_exact``: the exact two-sided McNemar test on the discordant pairs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from numpy.random import default_rng  # numpy loads it lazily, inside the first report otherwise

Z95 = 1.959963984540054
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 20260401
# Below this many tasks the over-tasks interval is approximate (its coverage is measured lower,
# docs/statistics.md), and reports say so.
FEW_TASKS = 10


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval; (0.0, 1.0) when n is 0."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def wilson_many(successes: np.ndarray, n: np.ndarray, z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """``wilson`` of many (successes, n) at once: the same operations in the same order, so the
    same bits."""
    successes, n = np.asarray(successes, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = successes / n
        denominator = 1 + z * z / n
        centre = (p + z * z / (2 * n)) / denominator
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
        low, high = np.maximum(0.0, centre - half), np.minimum(1.0, centre + half)
    empty = n == 0
    return np.where(empty, 0.0, low), np.where(empty, 1.0, high)


def wilson_effective(rate: np.ndarray, n_effective: np.ndarray, quantile: np.ndarray | float
                     ) -> tuple[np.ndarray, np.ndarray]:
    """The Wilson score interval around ``rate`` for an effective sample size (a variance turned
    into the n of a binomial with that rate and variance) and any quantile (z, or Student's t)."""
    q2 = np.square(quantile)
    with np.errstate(divide="ignore", invalid="ignore"):
        denominator = 1 + q2 / n_effective
        centre = (rate + q2 / (2 * n_effective)) / denominator
        half = quantile * np.sqrt(rate * (1 - rate) / n_effective + q2 / (4 * n_effective ** 2)) / denominator
    return np.maximum(0.0, centre - half), np.minimum(1.0, centre + half)


def _task_rates(successes: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row of (rows, tasks) arrays: the task rates (NaN where a task has no episode), the
    number of tasks with episodes, the mean of their rates, and the episodes in all."""
    successes, n = np.asarray(successes, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.where(n > 0, successes / n, np.nan)
    tasks = (n > 0).sum(axis=1)
    with np.errstate(invalid="ignore"):
        mean = np.where(tasks > 0, np.nansum(np.nan_to_num(rates), axis=1) / np.maximum(tasks, 1), 0.0)
    return rates, tasks, mean, n.sum(axis=1)


def _effective_n(mean: np.ndarray, variance: np.ndarray, episodes: np.ndarray) -> np.ndarray:
    """mean(1 - mean) / variance; the episodes themselves where that says nothing (a variance
    of 0: every task rate equal, or all 0 or all 1), as the plain Wilson interval would."""
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = mean * (1 - mean) / variance
    return np.where((variance > 0) & (n_eff > 0), n_eff, episodes)


def on_these_tasks_rows(successes: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                         np.ndarray]:
    """(rate, low, high, tasks) per row of (rows, tasks) arrays: the mean success over the tasks
    with episodes, each task a stratum. Its variance is the sum of the tasks' binomial variances
    (over tasks squared): only the repeats are random, so the spread between tasks is not noise,
    and the interval is narrower than a Wilson interval of the pooled episodes. Rows without
    episodes: rate 0, interval [0, 1]."""
    rates, tasks, mean, episodes = _task_rates(successes, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_task = np.where(n > 0, np.nan_to_num(rates) * (1 - np.nan_to_num(rates)) / n, 0.0)
        variance = per_task.sum(axis=1) / np.square(np.maximum(tasks, 1))
    low, high = wilson_effective(mean, _effective_n(mean, variance, episodes), Z95)
    empty = tasks == 0
    return mean, np.where(empty, 0.0, low), np.where(empty, 1.0, high), tasks


def over_tasks_rows(successes: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rate, low, high, tasks) per row: the mean success over the tasks with episodes, as an
    estimate of the rate on tasks drawn like these. Its variance is the sample variance of the
    task rates over the number of tasks (it holds the repeats' noise too); the quantile is
    Student's t with tasks - 1 degrees of freedom. Rows with fewer than 2 tasks: NaN bounds
    (one task says nothing about others)."""
    rates, tasks, mean, episodes = _task_rates(successes, n)
    centred = np.where(np.isnan(rates), 0.0, rates - mean[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = np.square(centred).sum(axis=1) / (tasks - 1) / tasks
    quantile = np.array([t_quantile(0.975, int(k) - 1) if k > 1 else np.nan for k in tasks.tolist()])
    low, high = wilson_effective(mean, _effective_n(mean, variance, episodes), quantile)
    few = tasks < 2
    return mean, np.where(few, np.nan, low), np.where(few, np.nan, high), tasks


def paired_over_tasks(differences: Sequence[float]) -> tuple[float, float, float] | None:
    """(mean, low, high) of per-task differences a - b, a t interval with tasks - 1 degrees of
    freedom; None with fewer than 2 tasks, and (mean, nan, nan) when every task differs by the
    same amount (no spread to learn the between-task variance from)."""
    d = np.asarray(differences, dtype=np.float64)
    if len(d) < 2:
        return None
    mean, spread = float(d.mean()), float(d.std(ddof=1))
    if spread == 0:
        return (mean, math.nan, math.nan)
    half = t_quantile(0.975, len(d) - 1) * spread / math.sqrt(len(d))
    return (mean, max(-1.0, mean - half), min(1.0, mean + half))


@functools.lru_cache(maxsize=256)
def t_quantile(p: float, df: int) -> float:
    """Student's t quantile (0.5 < p < 1), by bisection on its distribution function."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"t_quantile needs 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        if _t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low < 1e-13 * high:
            break
    return (low + high) / 2


def _t_cdf(t: float, df: int) -> float:
    """P(T <= t) for t >= 0: 1 - I_x(df/2, 1/2) / 2 with x = df / (df + t^2)."""
    return 1 - 0.5 * _incomplete_beta(df / (df + t * t), df / 2, 0.5)


def _incomplete_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b) (continued fraction, modified Lentz)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast on this side only
        return 1 - _incomplete_beta(1 - x, b, a)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 500):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + numerator * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return front * fraction


def cluster_bootstrap_rows(successes: np.ndarray, n: np.ndarray, samples: int = BOOTSTRAP_SAMPLES,
                           seed: int = BOOTSTRAP_SEED) -> tuple[np.ndarray, np.ndarray]:
    """``cluster_bootstrap`` of each row of (groups, clusters) arrays (clusters with n = 0 are
    left out, as there): rows with as many clusters share the draws and one matrix product."""
    low, high = np.zeros(len(n)), np.ones(len(n))
    kept = n > 0
    sizes = kept.sum(axis=1)
    single = np.flatnonzero(sizes == 1)
    if len(single):
        k, m = successes[single][kept[single]], n[single][kept[single]]
        low[single] = high[single] = k / m
    low_rank, high_rank = int(0.025 * (samples - 1)), math.ceil(0.975 * (samples - 1))
    for size in sorted(set(sizes[sizes > 1].tolist())):  # not np.unique: it imports numpy.ma (14 ms)
        rows = np.flatnonzero(sizes == size)
        mask = kept[rows]
        k = successes[rows][mask].reshape(len(rows), size).astype(np.float64)
        m = n[rows][mask].reshape(len(rows), size).astype(np.float64)
        draws = _multiplicities(size, samples, seed)
        rates = np.partition((k @ draws.T) / (m @ draws.T), (low_rank, high_rank), axis=1)  # exact integer sums
        low[rows], high[rows] = rates[:, low_rank], rates[:, high_rank]
    return low, high


def cluster_bootstrap(clusters: Sequence[tuple[int, int]], samples: int = BOOTSTRAP_SAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% percentile interval of sum(k)/sum(n), resampling (k, n) clusters with replacement."""
    counts = np.array(list(clusters), dtype=np.int64).reshape(-1, 2)
    low, high = cluster_bootstrap_rows(counts[None, :, 0], counts[None, :, 1], samples, seed)
    return (float(low[0]), float(high[0]))


@functools.lru_cache(maxsize=64)
def _multiplicities(clusters: int, samples: int, seed: int) -> np.ndarray:
    """How often each cluster is drawn in each bootstrap sample: the draws depend only on the
    number of clusters, so a report's hundreds of intervals share them (and one matrix product)."""
    draws = default_rng(seed).integers(0, clusters, size=(samples, clusters))
    cells = (np.arange(samples)[:, None] * clusters + draws).ravel()
    return np.bincount(cells, minlength=samples * clusters).reshape(samples, clusters).astype(np.float64)


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    2 * P(X <= min) for X ~ Binomial(a_only + b_only, 1/2), summed in log space (exact
    binomial coefficients of thousands of pairs are huge integers) from a table of log n!.
    """
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    log_factorial = _log_factorials(n)
    log_terms = log_factorial[n] - log_factorial[:k + 1] - log_factorial[n - k:n + 1][::-1] - n * math.log(2.0)
    top = log_terms.max()
    tail = math.exp(top) * float(np.exp(log_terms - top).sum())
    return min(1.0, 2 * tail)


_LOG_FACTORIALS = np.zeros(1)


def _log_factorials(n: int) -> np.ndarray:
    """log(i!) for i = 0..n (at least), grown on demand."""
    global _LOG_FACTORIALS
    if len(_LOG_FACTORIALS) <= n:
        size = max(n + 1, 2 * len(_LOG_FACTORIALS))
        _LOG_FACTORIALS = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, size, dtype=np.float64)))))
    return _LOG_FACTORIALS


def paired_difference(both: int, a_only: int, b_only: int, neither: int,
                      z: float = Z95) -> tuple[float, float, float]:
    """(p_a - p_b, low, high) for paired binary outcomes, Newcombe's method 10."""
    n = both + a_only + b_only + neither
    if n == 0:
        return (0.0, -1.0, 1.0)
    p1, p2 = (both + a_only) / n, (both + b_only) / n
    l1, u1 = wilson(both + a_only, n, z)
    l2, u2 = wilson(both + b_only, n, z)
    delta = p1 - p2
    product = (both + a_only) * (b_only + neither) * (both + b_only) * (a_only + neither)
    cross = both * neither - a_only * b_only
    if product == 0:
        phi = 0.0
    elif cross > 0:
        phi = max(cross - n / 2, 0) / math.sqrt(product)
    else:
        phi = cross / math.sqrt(product)
    low = delta - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = delta + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return (delta, max(-1.0, low), min(1.0, high))
