"""The report in the terminal, designed for 80 columns.

The narrow view (under ``WIDE_FROM`` columns, piped output included) shows what people compare:
the success rate on these tasks with its 95% interval, done/expected and errors, and in the
overall table the 95% interval over tasks like these (docs/statistics.md). ``--wide`` (or a
terminal of ``WIDE_FROM`` columns or more) adds the over-tasks interval to the setting and
dimension tables, the rate counting errors as failures, valid episodes, progress and the
effective rate. Numbers never shrink: their columns are as wide
as their widest cell, and only names fold onto a second line.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from benchmark.common.terminal_tables import fill_table, new_table
from benchmark.records.time_use import ROW_COLUMNS, summary_row
from reporting.render.tables import (
    APPROXIMATE_EXPLAINED,
    INTERVALS_EXPLAINED,
    any_approximate,
    done_of,
    effective_rate,
    on_these_tasks,
    over_tasks,
    paired_difference_text,
    paired_over_tasks_text,
    percent,
    problems,
    rate_with_interval,
)
from reporting.report_schema import Report

WIDE_FROM = 150

Column = tuple[str, Callable[[dict[str, Any]], str]]


def _columns(report: Report, wide: bool, over_tasks_column: bool) -> list[Column]:
    rate: Column = ("on these tasks", on_these_tasks)
    over: list[Column] = [("over tasks", over_tasks)] if over_tasks_column else []
    done: Column = ("done/expected", done_of)
    errors: Column = ("errors", lambda s: f"{s['errors']:,}")
    if not wide:
        return [rate, *over, done, errors]
    return [rate, *over,
            ("errors as failures", lambda s: rate_with_interval(s["success_rate_all"], s["success_rate_all_ci95"],
                                                                s["completed"])),
            ("valid", lambda s: f"{s['valid']:,}"), done, ("progress", lambda s: percent(s["progress"])), errors,
            ("effective", lambda s: effective_rate(report, s))]


def _stats_table(report: Report, title: str, key_column: str, rows: list[tuple[str, dict[str, Any]]],
                 wide: bool, over_tasks_column: bool) -> Table:
    columns = _columns(report, wide, over_tasks_column)
    cells = [[key, *(cell(stats) for _, cell in columns)] for key, stats in rows]
    return fill_table(new_table(title), [key_column, *(name for name, _ in columns)], cells)


def _paired_table(report: Report, wide: bool) -> Table:
    """Every pair of policies. Narrow: the pair and its number of pairs in the first cell, one
    line each (whole names in 80 columns); wide: a column each, with both / a only / b only."""
    header = (["a", "b", "pairs", "both", "a only", "b only"] if wide else ["policies"]) + [
        "a - b on these tasks", "over tasks", "McNemar p"]
    rows = []
    for c in report["paired_comparisons"]:
        difference = paired_difference_text(c["difference"], c["difference_ci95"]) if c["pairs"] else "-"
        names = ([c["policy_a"], c["policy_b"], f"{c['pairs']:,}", f"{c['both']:,}", f"{c['a_only']:,}",
                  f"{c['b_only']:,}"] if wide else [f"a: {c['policy_a']}\nb: {c['policy_b']}\n{c['pairs']:,} pairs"])
        rows.append([*names, difference, paired_over_tasks_text(c) if c["pairs"] else "-", f"{c['mcnemar_p']:.3g}"])
    return fill_table(new_table("paired comparisons (episodes both policies completed validly)"), header, rows,
                      names=2 if wide else 1)


def _anytime_table(report: Report) -> Table | None:
    """A run in progress: per policy and pair, the completed rounds and the 95% confidence
    sequence (valid however often one looks); None once every policy's run is complete."""
    anytime = report.get("anytime")
    if not anytime or all(report["per_policy"][p]["overall"]["progress"] >= 1 for p in report["policies"]):
        return None
    rows = []
    for policy, found in anytime["per_policy"].items():
        rows.append([policy, f"{found['rounds']:,}", _at_every_look(found["overall"], "rate")])
    for pair in anytime["paired"]:
        rows.append([f"a: {pair['a']}\nb: {pair['b']}", f"{pair['rounds']:,}",
                     _at_every_look(pair["overall"], "difference", signed=True)])
    table = fill_table(new_table("in progress: 95% at every look, on completed rounds"),
                       ["policy, or pair a - b", "rounds", "rate [95% at every look]"], rows)
    stops = [line for policy, found in anytime["per_policy"].items() if "stopped" in found
             for line in stop_lines(policy, found["stopped"])]
    if stops:
        table.caption, table.caption_justify = "\n".join(stops), "left"
    return table


def stop_lines(policy: str, stop: dict) -> list[str]:
    """Why a policy's run ended early, in lines of at most 80 columns."""
    if stop["resumed"]:
        text = (f"{policy}: stopped by {stop['rule']} after round {stop['after_round']} of {stop['rounds']}, "
                "then resumed (enqueue --resume-stopped)")
    else:
        text = (f"{policy}: stopped by {stop['rule']} after round {stop['after_round']} of {stop['rounds']} "
                f"({stop['detail']}); {stop['episodes_not_run']:,} episodes not run")
    return textwrap.wrap(text, 80, subsequent_indent="  ", break_on_hyphens=False)


def _at_every_look(found: dict, key: str, signed: bool = False) -> str:
    if found["cs95"] is None:
        return "-"
    low, high = found["cs95"]
    sign = "+" if signed else ""
    return f"{found[key] * 100:{sign}.1f}% [{low * 100:{sign}.1f}, {high * 100:{sign}.1f}]"


def _time_use_table(report: Report) -> Table | None:
    """Per policy, then per policy and machine: duty cycle, set-up and simulator shares, rate."""
    rows = []
    for policy, use in report.get("time_use", {}).items():
        if use["overall"]["episodes"]:
            rows.append(summary_row(policy, use["overall"]))
            rows += [summary_row(f"  @{machine}", figures) for machine, figures in use["machines"].items()]
    if not rows:
        return None
    return fill_table(new_table("time use: per policy, then per @machine"), ROW_COLUMNS, rows)


def print_report(report: Report, console: Console, top_k: int = 8, wide: bool | None = None) -> None:
    """The report on ``console``; ``wide`` None: wide when the console has ``WIDE_FROM`` columns."""
    wide = console.width >= WIDE_FROM if wide is None else wide

    def show(table: Table) -> None:
        console.print()
        if wide and (natural := console.measure(table, options=console.options.update_width(10_000)).maximum) \
                > console.width:
            # Every column even on a narrow terminal: lines longer than it wrap there, uncut
            # (console.print cannot print wider than the console).
            width, console.width = console.width, natural
            try:
                console.print(table)
            finally:
                console.width = width
        else:
            console.print(table)

    summary = report["spec_summary"]
    title = console.render_str(f"[bold]rtbench report[/]: spec {escape(summary['name'])} "
                               f"(sha256 {summary['sha256'][:12]}), {summary['num_settings']} settings x "
                               f"{summary['num_tasks']} tasks x {summary['repeats_per_setting']} repeats = "
                               f"{summary['total_per_policy']:,} episodes per policy; generated ")
    # The time unhighlighted, in one piece: reporting.printed_report puts it into a cached text.
    console.print(title.append(str(report["generated_at"])))
    found = problems(report)
    if found:
        console.print(f"[yellow]{len(found)} kind(s) of problem records: listed at the end[/]")
    per_policy = report["per_policy"]
    # The over-tasks interval: always in the overall table, in the narrow view not in the others
    # (their names need the room), never for single tasks (one task says nothing about others).
    show(_stats_table(report, "overall", "policy",
                      [(p, per_policy[p]["overall"]) for p in report["policies"]], wide, True))
    errors = report["global_error_types"]
    if errors:
        console.print("top errors: " + ", ".join(f"{k} x{v:,}" for k, v in list(errors.items())[:top_k]))
    for policy in report["policies"]:
        data = per_policy[policy]
        for dimension, values in data["per_dimension"].items():
            show(_stats_table(report, f"{policy}: by {dimension}", dimension, list(values.items()), wide, wide))
        show(_stats_table(report, f"{policy}: by setting", "setting",
                          [(s["setting_id"], s) for s in data["per_setting"]], wide, wide))
        valid_tasks = [t for t in data["per_task"] if t["valid"]]
        worst = sorted(valid_tasks, key=lambda t: (t["success_rate"], -t["valid"], t["task"]))[:top_k]
        best = sorted(valid_tasks, key=lambda t: (-t["success_rate"], -t["valid"], t["task"]))[:top_k]
        show(_stats_table(report, f"{policy}: worst tasks", "task", [(t["task"], t) for t in worst], wide, False))
        show(_stats_table(report, f"{policy}: best tasks", "task", [(t["task"], t) for t in best], wide, False))
    if report["paired_comparisons"]:
        show(_paired_table(report, wide))
    if (progress := _anytime_table(report)) is not None:
        show(progress)
    if (times := _time_use_table(report)) is not None:
        show(times)
    if "media" in report:
        console.print()
        console.print(f"videos in {escape(report['media']['media_dir'])}:", highlight=False)
        for policy, counts in report["media"]["per_policy"].items():
            states = ", ".join(f"{n:,} {state}" for state, n in counts.items() if state != "failures") or "none"
            console.print(f"  {escape(policy)}: {counts['failures']:,} failures; videos: {states}", highlight=False)
    console.print()
    console.print(f"[dim]{escape(INTERVALS_EXPLAINED)}[/]")
    if any_approximate(report):
        console.print(f"[yellow]{escape(APPROXIMATE_EXPLAINED)}[/]")
    if not wide:
        console.print("[dim]--wide (or a terminal of 150+ columns) adds the over-tasks interval of each setting "
                      "and dimension, the rate with errors as failures, valid, progress and the effective rate[/]")
    for problem in found:
        console.print()
        console.print(Text(problem.title, style="bold yellow"))
        for line in problem.lines:
            # Paths are printed whole (the terminal wraps them), never cut.
            console.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)
        console.print(Padding(Text(f"what to do: {problem.advice}", style="yellow"), (0, 0, 0, 2)))
