"""Intervals and paired comparisons for success rates (pure functions).

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
