"""Markdown report: deterministic (same inputs, same bytes, apart from the timestamp line)."""

from __future__ import annotations

from reporting.render.tables import APPROXIMATE_EXPLAINED, INTERVALS_EXPLAINED, any_approximate, fmt, problems, tables
from reporting.report_schema import Report

TITLES = {
    "overall": "Overall", "by_perturb_type": "By perturbation type", "by_severity": "By severity",
    "by_timing": "By timing", "by_setting": "By setting", "by_task": "By task (worst first)",
    "paired": "Paired comparisons (episodes both policies completed validly)",
}


def render_markdown(report: Report, top_k: int = 8) -> str:
    summary = report["spec_summary"]
    lines = [
        "# rtbench report",
        "",
        f"Generated: {report['generated_at']}",
        "",
        f"Spec `{summary['name']}` (sha256 `{summary['sha256'][:16]}`): {summary['num_settings']} settings x "
        f"{summary['num_tasks']} tasks x {summary['repeats_per_setting']} repeats = "
        f"{summary['total_per_policy']} episodes per policy. Policies: {', '.join(report['policies'])}.",
        "",
    ]
    for problem in problems(report, listed_paths=len(report["io_errors"].get("first_paths", []))):
        lines += [f"**{problem.title}**", ""] + [f"- `{line}`" for line in problem.lines]
        lines += ["", f"What to do: {problem.advice}.", ""]
    lines += [f"Intervals: {INTERVALS_EXPLAINED}. Columns: on_these_tasks_ci95 and over_tasks_ci95 "
              "(success_rate_ci95, a Wilson interval of the pooled episodes, and success_rate_ci95_cluster, a "
              "bootstrap over tasks, are kept for compatibility: they answer neither question at 95%).", ""]
    if any_approximate(report):
        lines += [f"**{APPROXIMATE_EXPLAINED}**", ""]
    if not report["has_caused_failure_data"]:
        lines += ["Effective rates (eff_*): not verified (the spec has no caused_failure labels).", ""]
    for name, (header, rows) in tables(report).items():
        if name == "by_task":
            rows = [r for p in report["policies"] for r in [x for x in rows if x[0] == p][:top_k]]
        lines += [f"## {TITLES[name]}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
        lines.append("")
    for policy in report["policies"]:
        errors = report["per_policy"][policy]["error_types"]
        if errors:
            lines += [f"## Errors of {policy}", ""] + [f"- {label}: {n}" for label, n in errors.items()] + [""]
    lines += ["## Notes", ""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"
