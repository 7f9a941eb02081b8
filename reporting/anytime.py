"""Intervals valid at every look: confidence sequences on completed rounds (docs/statistics.md).

A round is repeat r of every (setting, task) in scope ("slot"). Within a run, the slots'
outcomes are observations in [0, 1] whose conditional means are the slots' success
probabilities; a repeat's perturbation parameters are independent draws of the spec's
distribution and the scenes are the same in every round, so each completed round holds every
slot once and the average of the slots' probabilities, the on-these-tasks rate (these tasks
and scenes, averaged over the perturbations), is what the sequence covers at round ends. A
paired difference uses the two policies' outcome differences per slot, in [-1, 1].

The sequence is the predictable plug-in empirical-Bernstein confidence sequence of
Waudby-Smith and Ramdas ("Estimating means of bounded random variables by betting", JRSS-B
2024, Theorem 2; its supermartingale needs bounded observations and predictable bets and
centres only, so it covers the bet-weighted average of the conditional means), with one bet
per round (then that average is the slots' average at every round end) and each slot centred
on its own earlier rounds (so that the variance term is the outcomes' own, not the spread
between tasks), intersected over the rounds seen: with probability at least 1 - alpha it
holds the rate at every round end at once, however often a user looks and whenever they
stop. Fixed-sample intervals looked at every round do not (tests/stats/test_anytime.py).
"""

from __future__ import annotations

import math
import warnings

import numpy as np

ALPHA = 0.05
BET_CAP = 0.5  # c in the paper: the bets' cap (it suggests 1/2 or 3/4)


def confidence_sequence(rounds: np.ndarray, alpha: float = ALPHA, low: float = 0.0,
                        high: float = 1.0) -> tuple[float, float] | None:
    """The (1 - alpha) confidence sequence after the last round of ``rounds`` (rounds x slots
    of outcomes in [low, high], NaN where a slot has none), intersected over the rounds; None
    without any outcome."""
    values = np.asarray(rounds, dtype=np.float64)
    if values.ndim != 2:
        return None
    lower, upper = confidence_sequences(values[:, None, :], alpha, low, high)
    return None if math.isnan(lower[0]) else (float(lower[0]), float(upper[0]))


def confidence_sequences(rounds: np.ndarray, alpha: float = ALPHA, low: float = 0.0,
                         high: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``confidence_sequence`` of many groups at once: ``rounds`` is rounds x groups x slots
    (NaN pads a group with fewer slots); (lower, upper) per group, NaN without any outcome."""
    values = (np.asarray(rounds, dtype=np.float64) - low) / (high - low)
    _, groups, slots = values.shape
    log_term = math.log(2 / alpha)
    slot_sums, slot_counts = np.zeros((groups, slots)), np.zeros((groups, slots))
    n, sum_variance = np.zeros(groups), np.zeros(groups)
    sum_bets, sum_weighted, sum_penalty = np.zeros(groups), np.zeros(groups), np.zeros(groups)
    lower, upper = np.zeros(groups), np.ones(groups)
    for row in values:
        seen = np.isfinite(row)
        m = seen.sum(axis=1)
        if not m.any():
            continue
        x = np.where(seen, np.clip(np.nan_to_num(row), 0.0, 1.0), 0.0)
        centre_before = (0.5 + slot_sums) / (slot_counts + 1)  # predictable, per slot
        variance_before = (0.25 + sum_variance) / (n + 1)
        n = n + m
        with np.errstate(divide="ignore", invalid="ignore"):
            bet = np.minimum(np.sqrt(2 * log_term / (variance_before * n * np.log1p(n))), BET_CAP)
        bet = np.where(m > 0, bet, 0.0)
        squares = np.where(seen, (x - centre_before) ** 2, 0.0).sum(axis=1)
        sum_bets += bet * m
        sum_weighted += bet * x.sum(axis=1)
        sum_penalty += squares * (-np.log1p(-bet) - bet)  # 4 (x - centre)^2 psi_E(bet), psi_E = (...)/4
        sum_variance += squares
        slot_sums += x
        slot_counts += seen
        with np.errstate(divide="ignore", invalid="ignore"):
            centre, margin = sum_weighted / sum_bets, (log_term + sum_penalty) / sum_bets
        looked = m > 0
        lower = np.where(looked, np.maximum(lower, centre - margin), lower)
        upper = np.where(looked, np.minimum(upper, centre + margin), upper)
    crossed = lower > upper  # the running intersection can cross by chance: meet in the middle
    lower, upper = np.where(crossed, (lower + upper) / 2, lower), np.where(crossed, (lower + upper) / 2, upper)
    never = n == 0
    lower, upper = np.where(never, np.nan, lower), np.where(never, np.nan, upper)
    return low + (high - low) * lower, low + (high - low) * upper


METHOD = ("confidence sequence on completed rounds (predictable plug-in empirical Bernstein, "
          "Waudby-Smith & Ramdas 2024): holds at every look")


def completed_rounds(completed: np.ndarray) -> int:
    """How many leading rounds have an episode in every slot (``completed``: settings x tasks x
    repeats, the tasks in scope)."""
    full = completed.reshape(-1, completed.shape[-1]).min(axis=0) > 0 if completed.size else np.zeros(0, bool)
    return int(np.argmin(full)) if not full.all() else int(full.size)


def round_outcomes(valid: np.ndarray, successes: np.ndarray, rounds: int) -> np.ndarray:
    """Outcomes (settings x tasks x rounds) of the first ``rounds``: 1 success, 0 failure, NaN
    an error (no valid episode)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(valid[..., :rounds] > 0, successes[..., :rounds] / valid[..., :rounds], np.nan)


def _interval(key: str, estimate: float, lower: float, upper: float) -> dict:
    if math.isnan(lower):
        return {key: None, "cs95": None}
    return {key: estimate, "cs95": [lower, upper]}


def anytime_group(outcomes: np.ndarray, setting_ids: list[str], key: str, low: float = 0.0) -> dict:
    """Overall and per-setting sequences of outcomes (settings x tasks x rounds)."""
    settings, tasks, rounds = outcomes.shape
    overall = outcomes.reshape(settings * tasks, rounds).T[:, None, :]
    lo, hi = confidence_sequences(overall, low=low)
    per = outcomes.transpose(2, 0, 1)  # rounds x settings x tasks
    s_lo, s_hi = confidence_sequences(per, low=low)
    with warnings.catch_warnings():  # a setting without a valid episode: its mean is NaN, said as null
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(outcomes.reshape(settings, -1), axis=1) if rounds else np.full(settings, np.nan)
        mean = float(np.nanmean(outcomes)) if rounds else math.nan
    return {"rounds": rounds, "overall": _interval(key, mean, float(lo[0]), float(hi[0])),
            "per_setting": {sid: _interval(key, float(means[i]), float(s_lo[i]), float(s_hi[i]))
                            for i, sid in enumerate(setting_ids)}}


def anytime_section(names: list[str], counts: dict[str, np.ndarray], setting_ids: list[str],
                    tasks: list[int], stops: dict[str, dict | None] | None = None) -> dict:
    """The report's ``anytime``: per policy and per pair of policies, on their completed rounds
    (``counts``: policy -> (completed, valid, successes) x settings x tasks x repeats), and for
    a policy whose slice a stop rule stopped (``stops``: the notes beside its records), why."""
    outcomes, rounds, stopped = {}, {}, {}
    for policy in names:
        completed, valid, successes = (c[:, tasks, :] for c in counts[policy])
        rounds[policy] = completed_rounds(completed)
        outcomes[policy] = round_outcomes(valid, successes, rounds[policy])
        if (note := (stops or {}).get(policy)) is not None:
            stopped[policy] = _stopped(note, rounds[policy], int((completed == 0).sum()))
    paired = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = min(rounds[a], rounds[b])
            difference = outcomes[a][..., :shared] - outcomes[b][..., :shared]
            paired.append({"a": a, "b": b, **anytime_group(difference, setting_ids, "difference", low=-1.0)})
    per_policy = {p: anytime_group(outcomes[p], setting_ids, "rate") for p in names}
    for policy, stop in stopped.items():
        per_policy[policy]["stopped"] = stop
    return {"method": METHOD, "alpha": ALPHA, "per_policy": per_policy, "paired": paired}


def _stopped(note: dict, rounds: int, not_run: int) -> dict:
    """A stop note as the report gives it: resumed once a round beyond the one in flight at the
    stop completed (``enqueue --resume-stopped`` sent the rest)."""
    return {"rule": str(note.get("rule")), "after_round": int(note.get("after_round", 0)),
            "rounds": int(note.get("rounds", 0)), "detail": str(note.get("detail", "")),
            "at": str(note.get("at", "")), "episodes_not_run": not_run,
            "resumed": rounds > int(note.get("after_round", 0)) + 1}
