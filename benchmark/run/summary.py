"""The summary printed at the end of a run, the same for ``benchmark.eval_runner`` and
``python -m producer run``: per policy, the records of the spec slice on disk, how many
episodes this run ran, successes, errors and the success rate over valid records."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from rich.console import Console

from benchmark.common.terminal_tables import fill_table, new_table
from benchmark.records.episodes import iter_episodes
from benchmark.records.results import OK, finished_at, read_record
from benchmark.spec.spec_file import Spec


def print_run_summary(spec: Spec, policies: Iterable[str], results_dir: Path, started_at: float, *,
                      interrupted: bool, out: Console, notes: Console, report: str) -> None:
    """The table on ``out``; error labels, what to do after an interruption and ``report`` (the
    command that reports the same slice) on ``notes``. "ran now" counts the records written
    since ``started_at`` (epoch seconds)."""
    rows = []
    labels: Counter = Counter()
    for policy in policies:
        counts: Counter = Counter()
        for key in iter_episodes(spec, policy):
            read = read_record(key.result_path(results_dir), results_dir)
            if read.status != OK:
                continue
            counts["records"] += 1
            counts["ran now"] += finished_at(read.record) >= started_at
            if read.record.get("error") is not None:
                counts["errors"] += 1
                labels[read.record.get("error_type") or "unknown_error"] += 1
            elif read.record["success"]:
                counts["success"] += 1
        valid = counts["records"] - counts["errors"]
        rows.append([policy, f"{counts['records']:,}/{spec.episodes_per_policy:,}", f"{counts['ran now']:,}",
                     f"{counts['success']:,}", f"{counts['errors']:,}",
                     f"{counts['success'] / valid:.1%}" if valid else "-"])
    title = f"{spec.name}: {'interrupted' if interrupted else 'done'} (records in {results_dir})"
    out.print(fill_table(new_table(title), ["policy", "done/expected", "ran now", "successes", "errors",
                                            "success rate"], rows))
    if labels:
        notes.print("errors: " + ", ".join(f"{label} x{n}" for label, n in labels.most_common()))
    if interrupted:
        notes.print("[yellow]interrupted: the episode in flight was dropped; run the same command to resume[/]")
    for line in command_lines("report:", report):
        notes.print(line, soft_wrap=True, markup=False, highlight=False)


def command_lines(label: str, command: str, width: int = 80) -> list[str]:
    """``label command`` on one line when it fits ``width``; else the label, then the command
    broken before its options with shell continuations, so that it pastes as one command."""
    if len(label) + 1 + len(command) <= width:
        return [f"{label} {command}"]
    lines, current = [label], "  "
    for part in re.split(r" (?=--)", command):
        if current.strip() and len(current) + 1 + len(part) + 2 > width:
            lines.append(current + " \\")
            current = "    "
        current += ("" if not current.strip() else " ") + part
    return [*lines, current]
