"""The report's tables as plain rows, shared by the terminal, Markdown and CSV renderers."""

from __future__ import annotations

from typing import Any

from reporting.report_schema import Report

STAT_COLUMNS = ("completed", "expected", "progress", "valid", "errors", "successes", "success_rate",
                "success_rate_ci95", "success_rate_ci95_cluster", "success_rate_all", "eff_total", "eff_valid",
                "eff_successes", "eff_success_rate")


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, float) for v in value):
        return f"[{value[0]:.3f}, {value[1]:.3f}]"
    return "" if value is None else str(value)


# Records left out of every count, and records counted more than once for one episode.
RECORD_PROBLEMS = (("out_of_spec", "Excluded records outside the spec"),
                   ("config_mismatch", "Excluded records with another benchmark's config"),
                   ("misplaced", "Excluded records in another policy's folder"),
                   ("duplicates", "Duplicate records (counted, as today; paired comparisons skip disagreeing ones)"))


def record_problems(report: Report) -> list[str]:
    """One line per kind of problem records, e.g. ``Excluded records outside the spec: A: 2``."""
    return [f"{label}: " + ", ".join(f"{p}: {n}" for p, n in report[key].items())
            for key, label in RECORD_PROBLEMS if report.get(key)]


def stat_cells(stats: dict[str, Any]) -> list[Any]:
    return [stats[c] for c in STAT_COLUMNS]


def tables(report: Report) -> dict[str, tuple[list[str], list[list[Any]]]]:
    """name -> (header, rows): overall, by_setting, by_task, by_perturb_type, by_severity, by_timing, paired."""
    out: dict[str, tuple[list[str], list[list[Any]]]] = {}
    per_policy = report["per_policy"]
    out["overall"] = (["policy", *STAT_COLUMNS],
                      [[p, *stat_cells(per_policy[p]["overall"])] for p in report["policies"]])
    out["by_setting"] = (["policy", "setting_id", "perturb_type", "severity", "timing", *STAT_COLUMNS],
                         [[p, s["setting_id"], s["perturb_type"], s["severity"], s["timing"], *stat_cells(s)]
                          for p in report["policies"] for s in per_policy[p]["per_setting"]])
    out["by_task"] = (["policy", "task", *STAT_COLUMNS],
                      [[p, t["task"], *stat_cells(t)] for p in report["policies"] for t in per_policy[p]["per_task"]])
    for dimension in ("perturb_type", "severity", "timing"):
        out[f"by_{dimension}"] = (["policy", dimension, *STAT_COLUMNS],
                                  [[p, value, *stat_cells(stats)] for p in report["policies"]
                                   for value, stats in per_policy[p]["per_dimension"][dimension].items()])
    out["paired"] = (["policy_a", "policy_b", "setting_id", "pairs", "a_only", "b_only", "difference",
                      "difference_ci95", "mcnemar_p"],
                     [[c["policy_a"], c["policy_b"], scope.get("setting_id", "ALL"), scope["pairs"], scope["a_only"],
                       scope["b_only"], scope["difference"], scope["difference_ci95"], scope["mcnemar_p"]]
                      for c in report["paired_comparisons"] for scope in [c, *c["per_setting"]] if scope["pairs"]])
    return out
