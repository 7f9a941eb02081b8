"""Stop rules: when a run in progress has answered its question (docs/statistics.md).

``producer enqueue --stop-when RULE`` names one; workers check it on the completed rounds
after each round (``worker/stop_check.py``) and withdraw the slice's remaining messages when
it holds. The rules read the confidence sequences of ``reporting/anytime.py``, which hold at
every look at once, so checking after every round does not inflate their error rates:

- ``width<W``: every setting's on-these-tasks rate is known to within W (its 95% sequence is
  narrower than W), for each policy of the slice on its own.
- ``decided:A,B``: the paired 95% sequence of A - B over the slice excludes 0.
- ``decided:A,B,per-setting``: each setting's paired sequence excludes 0, at 95% for all of
  them together (each at 1 - 0.05 / settings, Bonferroni): a wrong sign in any setting is
  an error of the rule, so the settings share its 5%.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from benchmark.common.names import validate_name
from reporting.anytime import ALPHA, completed_rounds, confidence_sequences, round_outcomes

WIDTH, DECIDED = "width", "decided"
PER_SETTING = "per-setting"
_WIDTH = re.compile(r"^width\s*<\s*(\d*\.?\d+)$")
RULE_HELP = "write width<0.05 or decided:A,B[,per-setting]"


class StopRuleError(ValueError):
    pass


@dataclass(frozen=True)
class StopRule:
    text: str
    kind: str                      # WIDTH or DECIDED
    width: float = math.nan        # WIDTH: the widest interval that counts as known
    pair: tuple[str, ...] = ()     # DECIDED: (A, B)
    per_setting: bool = False      # DECIDED: every setting, not the slice overall

    def governs(self, policies: list[str]) -> list[str]:
        """The policies of an enqueue whose slices this rule stops."""
        return list(self.pair) if self.kind == DECIDED else list(policies)

    def stops_with(self, policy: str) -> list[str]:
        """The policies whose slices stop when the rule holds for ``policy``: a ``width`` rule
        stops each policy on its own, a ``decided`` rule both of its pair."""
        return list(self.pair) if self.kind == DECIDED else [policy]


def parse_stop_rule(text: str, policies: list[str]) -> StopRule:
    """The rule ``text`` names, checked against the policies enqueued with it; ``StopRuleError``
    says what is wrong and what to write."""
    rule = text.strip()
    if match := _WIDTH.match(rule):
        width = float(match.group(1))
        if not 0 < width < 1:
            raise StopRuleError(f"--stop-when {text!r}: the width must lie between 0 and 1\n"
                                "(a rate's interval), e.g. width<0.05")
        return StopRule(rule, WIDTH, width=width)
    if rule.startswith(f"{DECIDED}:"):
        parts = [p.strip() for p in rule[len(DECIDED) + 1:].split(",")]
        per_setting = parts[-1] == PER_SETTING
        pair = tuple(parts[:-1] if per_setting else parts)
        if len(pair) != 2 or pair[0] == pair[1]:
            raise StopRuleError(f"--stop-when {text!r}: name two different policies,\n"
                                "e.g. decided:A,B")
        for name in pair:
            validate_name(name, "policy")
        missing = [name for name in pair if name not in policies]
        if missing:
            raise StopRuleError(f"--stop-when {text!r}: {', '.join(missing)} not enqueued here;\n"
                                f"enqueue both: --policy {pair[0]} --policy {pair[1]}")
        return StopRule(rule, DECIDED, pair=pair, per_setting=per_setting)
    raise StopRuleError(f"--stop-when {text!r}: not a rule;\n{RULE_HELP}")


@dataclass(frozen=True)
class Verdict:
    holds: bool
    rounds: int   # completed rounds the rule was checked on
    detail: str   # what the sequences said, one line


Counts = tuple[np.ndarray, np.ndarray, np.ndarray]  # (completed, valid, successes): settings x tasks x repeats


def evaluate(rule: StopRule, counts: dict[str, Counts], setting_ids: list[str]) -> dict[str, Verdict]:
    """The rule on each governed policy's completed rounds (``counts`` per policy, the slice's
    settings and tasks only): policy -> verdict. A ``decided`` rule gives both policies one."""
    rounds = {p: completed_rounds(c[0]) for p, c in counts.items()}
    outcomes = {p: round_outcomes(c[1], c[2], rounds[p]) for p, c in counts.items()}
    if rule.kind == WIDTH:
        return {p: _width(rule.width, outcomes[p], setting_ids) for p in counts}
    a, b = rule.pair
    shared = min(rounds[a], rounds[b])
    verdict = _decided(outcomes[a][..., :shared] - outcomes[b][..., :shared], setting_ids, rule)
    return {a: verdict, b: verdict}


def _width(width: float, outcomes: np.ndarray, setting_ids: list[str]) -> Verdict:
    rounds = outcomes.shape[-1]
    if not rounds:
        return Verdict(False, 0, "no completed round yet")
    lower, upper = confidence_sequences(outcomes.transpose(2, 0, 1))
    widths = upper - lower
    widest = int(np.nanargmax(widths)) if np.isfinite(widths).any() else 0
    holds = bool(np.isfinite(widths).all() and (widths < width).all())
    return Verdict(holds, rounds, f"widest setting {setting_ids[widest]}: "
                                  f"[{lower[widest]:.3f}, {upper[widest]:.3f}] (width {widths[widest]:.3f})")


def _decided(difference: np.ndarray, setting_ids: list[str], rule: StopRule) -> Verdict:
    settings, tasks, rounds = difference.shape
    if not rounds:
        return Verdict(False, 0, "no round completed by both policies yet")
    a, b = rule.pair
    if not rule.per_setting:
        lower, upper = confidence_sequences(difference.reshape(settings * tasks, rounds).T[:, None, :], low=-1.0)
        lo, hi = float(lower[0]), float(upper[0])
        holds = math.isfinite(lo) and (lo > 0 or hi < 0)
        return Verdict(holds, rounds, f"{a} - {b}: [{lo:+.3f}, {hi:+.3f}]")
    lower, upper = confidence_sequences(difference.transpose(2, 0, 1), alpha=ALPHA / settings, low=-1.0)
    open_ = [i for i in range(settings) if not (lower[i] > 0 or upper[i] < 0)]  # NaN: not decided
    if open_:
        i = open_[0]
        return Verdict(False, rounds, f"{len(open_)} of {settings} settings undecided, e.g. {setting_ids[i]}: "
                                      f"[{lower[i]:+.3f}, {upper[i]:+.3f}]")
    better = sum(1 for i in range(settings) if lower[i] > 0)
    return Verdict(True, rounds, f"{a} better in {better}, {b} in {settings - better} of {settings} settings")
