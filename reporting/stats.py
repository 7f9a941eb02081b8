"""Intervals and paired comparisons for success rates (pure functions).

- ``wilson``: the Wilson score interval of k successes in n trials.
- ``cluster_bootstrap``: a percentile bootstrap that resamples whole clusters (tasks), because
  the repeats of one task share one scene and are not independent; naive intervals are too
  narrow. Deterministic: a fixed seed.
- ``paired_difference``: Newcombe's interval (method 10) for the difference of two paired
  proportions, and ``mcnemar_exact``: the exact two-sided McNemar test on the discordant pairs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

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


def cluster_bootstrap(clusters: Sequence[tuple[int, int]], samples: int = BOOTSTRAP_SAMPLES,
                      seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% percentile interval of sum(k)/sum(n), resampling (k, n) clusters with replacement."""
    return cluster_bootstraps([clusters], samples, seed)[0]


def cluster_bootstraps(groups: Sequence[Sequence[tuple[int, int]]], samples: int = BOOTSTRAP_SAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> list[tuple[float, float]]:
    """``cluster_bootstrap`` of many groups at once: groups with as many clusters share the
    draws, so their sums are one matrix product and their sorts one call."""
    intervals: list[tuple[float, float]] = [(0.0, 1.0)] * len(groups)
    by_size: dict[int, list[int]] = {}
    for index, group in enumerate(groups):
        kept = [c for c in group if c[1] > 0]
        if len(kept) == 1:
            k, n = kept[0]
            intervals[index] = (k / n, k / n)
        elif kept:
            by_size.setdefault(len(kept), []).append(index)
    low, high = int(0.025 * (samples - 1)), math.ceil(0.975 * (samples - 1))
    for size, members in by_size.items():
        counts = np.array([[c for c in groups[i] if c[1] > 0] for i in members], dtype=np.float64)  # (g, size, 2)
        resampled = _multiplicities(size, samples, seed) @ counts  # (g, samples, 2): exact integer sums
        # The two percentiles are order statistics: a partition finds them without a full sort.
        rates = np.partition(resampled[:, :, 0] / resampled[:, :, 1], (low, high), axis=1)
        for i, (lo, hi) in zip(members, zip(rates[:, low].tolist(), rates[:, high].tolist(), strict=True),
                               strict=True):
            intervals[i] = (lo, hi)
    return intervals


@functools.lru_cache(maxsize=64)
def _multiplicities(clusters: int, samples: int, seed: int) -> np.ndarray:
    """How often each cluster is drawn in each bootstrap sample: the draws depend only on the
    number of clusters, so a report's hundreds of intervals share them (and one matrix product)."""
    draws = np.random.default_rng(seed).integers(0, clusters, size=(samples, clusters))
    counts = np.zeros((samples, clusters), dtype=np.float64)
    np.add.at(counts, (np.arange(samples)[:, None], draws), 1.0)
    return counts


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
