"""The report in the terminal: rich tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reporting.render.tables import fmt, record_problems
from reporting.report_schema import Report

SHOWN = ("completed", "expected", "progress", "errors", "success_rate", "success_rate_ci95",
         "success_rate_ci95_cluster", "success_rate_all")


def _stats_table(title: str, key_column: str, rows: list[tuple[str, dict[str, Any]]]) -> Table:
    table = Table(title=title)
    table.add_column(key_column)
    for column in SHOWN:
        table.add_column(column.replace("success_rate", "rate").replace("_ci95", " 95%"), justify="right")
    for key, stats in rows:
        table.add_row(key, *(fmt(stats[c]) for c in SHOWN))
    return table


def print_report(report: Report, console: Console, top_k: int = 8) -> None:
    per_policy = report["per_policy"]
    console.print(_stats_table("overall", "policy", [(p, per_policy[p]["overall"]) for p in report["policies"]]))
    errors = report["global_error_types"]
    if errors:
        console.print("top errors: " + ", ".join(f"{k} x{v}" for k, v in list(errors.items())[:top_k]))
    for policy in report["policies"]:
        data = per_policy[policy]
        for dimension, values in data["per_dimension"].items():
            console.print(_stats_table(f"{policy}: by {dimension}", dimension, list(values.items())))
        console.print(_stats_table(f"{policy}: by setting", "setting",
                                   [(s["setting_id"], s) for s in data["per_setting"]]))
        valid_tasks = [t for t in data["per_task"] if t["valid"]]
        worst = sorted(valid_tasks, key=lambda t: (t["success_rate"], -t["valid"], t["task"]))[:top_k]
        best = sorted(valid_tasks, key=lambda t: (-t["success_rate"], -t["valid"], t["task"]))[:top_k]
        console.print(_stats_table(f"{policy}: worst tasks", "task", [(t["task"], t) for t in worst]))
        console.print(_stats_table(f"{policy}: best tasks", "task", [(t["task"], t) for t in best]))
    if report["paired_comparisons"]:
        table = Table(title="paired comparisons (episodes both completed validly)")
        for column in ("a", "b", "pairs", "a only", "b only", "difference", "95%", "McNemar p"):
            table.add_column(column, justify="left" if column in ("a", "b") else "right")
        for c in report["paired_comparisons"]:
            table.add_row(c["policy_a"], c["policy_b"], str(c["pairs"]), str(c["a_only"]), str(c["b_only"]),
                          fmt(c["difference"]), fmt(c["difference_ci95"]), fmt(c["mcnemar_p"]))
        console.print(table)
    for line in record_problems(report):
        console.print(f"[yellow]{escape(line)}[/]")
