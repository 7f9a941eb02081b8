"""``enqueue --stop-when``: the rule set for the slices being sent, before anything is sent.

The rule names the slice (settings, tasks, repeats of the filtered spec) and the queue its
messages go to, so that a worker can check it and withdraw the slice without the spec. The
outcomes of the slice's records already in this results folder are noted with it (a slice
resumed under a new rule counts its finished rounds); a record only another machine holds
keeps its round open until that machine's worker notes it... which it never does: so run
``--stop-when`` where the records are (after a pull), or the rule waits for those rounds.
``--resume-stopped`` without a rule clears the old one: the withdrawn episodes run to the end.

A stop is also a note beside the records (``benchmark/records/stop_notes.py``): a Redis that
lost it learns it again from there at the next enqueue (``forgotten_stops``).
"""

from __future__ import annotations

import os
import textwrap
from datetime import datetime, timezone
from pathlib import Path

from benchmark.records.results import OK, counts_as_done, read_record
from benchmark.records.stop_notes import outcome_code, read_stop_note
from benchmark.spec.spec_file import Spec
from reporting.stop_rule import StopRule
from worker.queue.state import QueueState
from worker.queue.stop_rules import StopRules


def rule_info(rule: StopRule, spec: Spec, policies: list[str], queue: str) -> dict:
    return {"rule": rule.text, "policies": policies, "queue": queue,
            "settings": [s.id for s in spec.settings], "tasks": list(spec.tasks), "repeats": spec.repeats,
            "set_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def set_stop_rule(state: QueueState, spec: Spec, policies: list[str], rule: StopRule, queue: str,
                  results_dir: Path) -> int:
    """Set ``rule`` for its policies' slices and note the outcomes of their records here;
    returns how many were noted."""
    rules, governed = StopRules(state.r), rule.governs(policies)
    rules.set_rule(spec.sha256, governed, rule_info(rule, spec, policies, queue))
    outcomes: list[tuple[str, str]] = []
    for policy in governed:
        for setting in spec.settings:
            for task in spec.tasks:
                for repeat in range(spec.repeats):
                    episode_id = f"{policy}/{setting.id}/{task}/episode_{repeat}"
                    code = _outcome(os.path.join(results_dir, f"{episode_id}.json"), results_dir)
                    if code is not None:
                        outcomes.append((episode_id, code))
    for start in range(0, len(outcomes), 5000):
        rules.note_outcomes(spec.sha256, outcomes[start:start + 5000])
    return len(outcomes)


def clear_stop_rule(state: QueueState, spec: Spec, policies: list[str]) -> None:
    StopRules(state.r).clear_rule(spec.sha256, policies)


def _outcome(path: str, results_dir: Path) -> str | None:
    if not os.path.exists(path):
        return None
    read = read_record(path, results_dir)
    return outcome_code(read.record, counts_as_done(read.record)) if read.status == OK else None


def stop_lines(state: QueueState, spec_sha: str, policies: list[str]) -> list[str]:
    """What ``producer status`` says of the policies' stop rules, in lines of at most 80 columns:
    the rule and the rounds it was checked on, or that the slice stopped, why and when."""
    rules = StopRules(state.r)
    rules_set, notes = rules.rules(spec_sha), rules.notes(spec_sha)
    lines: list[str] = []
    for policy in policies:
        if (note := notes.get(policy)) is not None:
            text = (f"{policy}: stopped by {note['rule']} after round {note['after_round']} of "
                    f"{note['rounds']} ({note['detail']}); enqueue --resume-stopped sends the rest")
        elif (rule := rules_set.get(policy)) is not None:
            checked = rules.checked(spec_sha, policy)
            text = (f"{policy}: stops when {rule['rule']} holds; checked after round {checked} of "
                    f"{rule['repeats']}" if checked else
                    f"{policy}: stops when {rule['rule']} holds; not checked yet (no round complete)")
        else:
            continue
        lines += textwrap.wrap(text, 80, subsequent_indent="  ", break_on_hyphens=False)
    return lines


def forgotten_stops(state: QueueState, spec: Spec, policies: list[str],
                    results_dir: Path) -> dict[str, tuple[dict, list[str]]]:
    """Stops that notes beside the records tell of and this Redis does not know (a new Redis,
    one that lost its data, the embedded one of another ``producer run``): policy -> (note,
    the episodes of its slice in this spec slice). The records are the truth: without this, a
    plain enqueue would send a stopped slice again."""
    known = StopRules(state.r).known_stops(spec.sha256)
    wanted = {s.id for s in spec.settings}, set(spec.tasks)
    found = {}
    for policy in policies:
        if policy in known or (note := read_stop_note(results_dir, policy, spec.sha256)) is None:
            continue
        try:
            rounds = min(int(note["rounds"]), spec.repeats)
            ids = [f"{policy}/{setting}/{task}/episode_{repeat}" for repeat in range(rounds)
                   for setting in note["settings"] if setting in wanted[0]
                   for task in note["tasks"] if task in wanted[1]]
        except (KeyError, TypeError, ValueError):
            continue  # a note of another shape says nothing this enqueue can use
        found[policy] = (note, ids)
    return found


def restore_stops(state: QueueState, spec_sha: str, forgotten: dict[str, tuple[dict, list[str]]],
                  skipped: list[str]) -> None:
    """Tell Redis again what the notes said: their notes, and the episodes the plan skipped as
    stopped (never one enqueued, done or running: the plan sent or skipped those for that)."""
    rules, skipped_set = StopRules(state.r), set(skipped)
    for policy, (note, ids) in forgotten.items():
        rules.note_stop(spec_sha, [policy], note)
        state.counters.withdraw(spec_sha, [i for i in ids if i in skipped_set])
