"""Checking stop rules after each round, on the worker that wrote the round's last records.

The finisher marks records finished (the same script notes their outcomes for policies with a
rule) and hands over how many outcomes each such policy has (``check_due``). A policy's rule is due
when enough of its outcomes are in Redis to fill a round beyond the rounds last checked (the
count is fleet-wide), and at most every ``MIN_INTERVAL_S`` per process: a round whose last
episode is still out is checked again on the next records. Checking at every round is sound:
the rules read confidence sequences, valid at every look (``reporting/stop_rule.py``).

When a rule holds, the first note is kept in Redis, the slice is withdrawn (its episodes that
nobody runs become stopped, their messages deleted) and the note is written beside the
records for the sync to push. Any worker may do each step again: a kill halfway through
leaves the next check to finish it. A failure here is logged and never touches a record.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.records.stop_notes import write_stop_note
from reporting.stop_rule import evaluate, parse_stop_rule
from worker.queue.stop_rules import WITHDRAWN_FOR_GOOD, StopRules

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 2.0


class StopCheck:
    def __init__(self, rules: StopRules, results_dir: Path, machine: str) -> None:
        self.rules, self.results_dir, self.machine = rules, results_dir, machine
        self._noted: dict[tuple[str, str], int] = {}  # (spec, policy) -> outcomes in Redis
        self._last: dict[tuple[str, str], float] = {}  # (spec, policy) -> when this process checked

    def check_due(self, noted: dict[str, dict[str, int]]) -> None:
        """Check every rule a round may have completed for since it was last checked (``noted``:
        spec -> policy with a rule -> its outcomes in Redis, from ``QueueState.mark_finished``)."""
        due, self._noted = self._noted, {}
        for spec_sha, counts in noted.items():
            for policy, count in counts.items():
                due[spec_sha, policy] = count
        for (spec_sha, policy), count in due.items():
            key = (spec_sha, policy)
            if time.monotonic() - self._last.get(key, -MIN_INTERVAL_S) < MIN_INTERVAL_S:
                self._noted.setdefault(key, count)  # the next records check it
                continue
            rule = self.rules.rule(spec_sha, policy)
            if rule is None:
                continue
            slots = len(rule["settings"]) * len(rule["tasks"])
            if count // slots <= self.rules.checked(spec_sha, policy):
                continue
            self._last[key] = time.monotonic()
            self.check(spec_sha, policy, rule)

    def check(self, spec_sha: str, policy: str, rule: dict[str, Any]) -> bool:
        """Evaluate ``policy``'s rule on the outcomes in Redis; stop its slice when it holds."""
        stop_rule = parse_stop_rule(rule["rule"], rule["policies"])
        governed = stop_rule.stops_with(policy)
        counts = {p: self._counts(spec_sha, p, rule) for p in governed}
        verdict = evaluate(stop_rule, counts, rule["settings"])[policy]
        if not verdict.holds:
            for p in governed:
                self.rules.raise_checked(spec_sha, p, verdict.rounds)
            return False
        note = {"rule": stop_rule.text, "policies": governed, "after_round": verdict.rounds,
                "rounds": rule["repeats"], "detail": verdict.detail, "spec_sha256": spec_sha,
                "settings": rule["settings"], "tasks": rule["tasks"], "machine": self.machine,
                "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        # In this order, each step done again by the next check: the notes before the withdrawal,
        # whose in-flight records are the only ones left to trigger that check.
        kept = self.rules.note_stop(spec_sha, governed, note)
        for p in governed:
            write_stop_note(self.results_dir, p, kept)
        withdrawn = self.rules.withdraw(spec_sha, rule["queue"], [i for p in governed for i in _slice_ids(p, rule)])
        for p in governed:
            self.rules.raise_checked(spec_sha, p, WITHDRAWN_FOR_GOOD)
        log.warning("stop rule %s holds for %s after round %d of %d (%s): %d episodes withdrawn "
                    "(enqueue --resume-stopped sends them)", stop_rule.text, ", ".join(governed),
                    kept["after_round"], rule["repeats"], kept["detail"], withdrawn)
        return True

    def _counts(self, spec_sha: str, policy: str, rule: dict[str, Any]) -> tuple[np.ndarray, ...]:
        """(completed, valid, successes) per setting x task x repeat of the slice, from Redis."""
        shape = (len(rule["settings"]), len(rule["tasks"]), rule["repeats"])
        codes = np.array([c or "" for c in self.rules.outcomes_of(spec_sha, _slice_ids(policy, rule))])
        codes = codes.reshape(shape[2], shape[0], shape[1]).transpose(1, 2, 0)  # ids go repeat-major
        return codes != "", (codes == "1") | (codes == "0"), codes == "1"


def _slice_ids(policy: str, rule: dict[str, Any]) -> list[str]:
    return [f"{policy}/{setting}/{task}/episode_{repeat}" for repeat in range(rule["repeats"])
            for setting in rule["settings"] for task in rule["tasks"]]

