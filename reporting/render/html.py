"""A single self-contained HTML report: inline CSS and SVG, no script, no network access.

Charts: progress per policy, per-dimension success rates with 95% interval whiskers, and a
setting x task success heatmap per policy. Tables: overall and paired comparisons.
"""

from __future__ import annotations

from html import escape
from typing import Any

from reporting.render.tables import fmt, record_problems, tables
from reporting.report_schema import Report

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#1d2330;background:#fff}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #dde2ea;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #dde2ea;padding:3px 7px}
th{background:#f3f5f9;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:#5b6475;font-size:13px}.warn{color:#9a5b00}svg text{font-size:11px;fill:#1d2330}
"""


def _colour(rate: float | None) -> str:
    if rate is None:
        return "#eceff4"
    red, green = (215, 48, 39), (26, 152, 80)
    mix = [round(r + (g - r) * rate) for r, g in zip(red, green, strict=True)]
    return f"rgb({mix[0]},{mix[1]},{mix[2]})"


def _heatmap(report: Report, policy: str) -> str:
    per_policy = report["per_policy"][policy]
    settings = [s["setting_id"] for s in per_policy["per_setting"]]
    tasks = list(dict.fromkeys(c["task"] for c in per_policy["per_setting_task"]))
    cell, left, top = 16, 230, 150
    width, height = left + cell * len(tasks) + 20, top + cell * len(settings) + 20
    rates = {(c["setting_id"], c["task"]): c for c in per_policy["per_setting_task"]}
    parts = [f'<svg role="img" aria-label="heatmap {escape(policy)}" width="{width}" height="{height}" '
             f'xmlns="http://www.w3.org/2000/svg">']
    for j, task in enumerate(tasks):
        x = left + j * cell + cell / 2
        parts.append(f'<text transform="translate({x},{top - 6}) rotate(-60)">{escape(task)}</text>')
    for i, setting in enumerate(settings):
        y = top + i * cell
        parts.append(f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{escape(setting)}</text>')
        for j, task in enumerate(tasks):
            data = rates.get((setting, task))
            rate = data["success_rate"] if data and data["valid"] else None
            title = f"{setting} / {task}: " + (f"{data['successes']}/{data['valid']} valid" if data else "no records")
            parts.append(f'<rect x="{left + j * cell}" y="{y}" width="{cell - 1}" height="{cell - 1}" '
                         f'fill="{_colour(rate)}"><title>{escape(title)}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def _bars(groups: list[tuple[str, dict[str, Any]]], title: str) -> str:
    width, bar_h, left = 520, 18, 170
    height = 20 + bar_h * len(groups) * 1.4
    scale = width - left - 40
    parts = [f'<svg role="img" aria-label="{escape(title)}" width="{width}" height="{height:.0f}" '
             f'xmlns="http://www.w3.org/2000/svg">']
    for i, (label, stats) in enumerate(groups):
        y = 10 + i * bar_h * 1.4
        rate, (low, high) = stats["success_rate"], stats["success_rate_ci95"]
        parts.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{escape(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{rate * scale:.1f}" height="{bar_h}" fill="#4c78a8"/>')
        parts.append(f'<line x1="{left + low * scale:.1f}" x2="{left + high * scale:.1f}" y1="{y + bar_h / 2}" '
                     f'y2="{y + bar_h / 2}" stroke="#1d2330" stroke-width="1.5"/>')
        parts.append(f'<text x="{left + rate * scale + 4:.1f}" y="{y + 13}">{rate:.1%} (n={stats["valid"]})</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(
        f'<td class="n">{escape(fmt(c))}</td>' if isinstance(c, (int, float, list)) else f"<td>{escape(fmt(c))}</td>"
        for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: Report) -> str:
    summary = report["spec_summary"]
    all_tables = tables(report)
    parts = ["<!doctype html><html lang='en'><head><meta charset='utf-8'><title>rtbench report</title>",
             f"<style>{CSS}</style></head><body><h1>rtbench report</h1>",
             f"<p class='meta'>Generated {escape(report['generated_at'])}. Spec <b>{escape(summary['name'])}</b> "
             f"(sha256 {escape(summary['sha256'][:16])}): {summary['num_settings']} settings x "
             f"{summary['num_tasks']} tasks x {summary['repeats_per_setting']} repeats per policy.</p>"]
    parts.extend(f"<p class='warn'>{escape(line)}</p>" for line in record_problems(report))
    parts.append("<h2>Progress</h2>")
    parts.append(_bars([(p, {**report["per_policy"][p]["overall"],
                             "success_rate": report["per_policy"][p]["overall"]["progress"],
                             "success_rate_ci95": [report["per_policy"][p]["overall"]["progress"]] * 2})
                        for p in report["policies"]], "progress"))
    parts.append("<h2>Overall</h2>" + _table(*all_tables["overall"]))
    for policy in report["policies"]:
        dimensions = report["per_policy"][policy]["per_dimension"]
        parts.append(f"<h2>{escape(policy)}: success rate by dimension (95% Wilson whiskers)</h2>")
        groups = [(f"{dim}={value}", stats) for dim, values in dimensions.items() for value, stats in values.items()]
        parts.append(_bars(groups, f"dimensions {policy}"))
        parts.append(f"<h2>{escape(policy)}: setting x task success</h2>" + _heatmap(report, policy))
    if report["paired_comparisons"]:
        parts.append("<h2>Paired comparisons</h2>" + _table(*all_tables["paired"]))
    parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in report["notes"]) + "</ul>")
    parts.append("</body></html>")
    return "".join(parts)
