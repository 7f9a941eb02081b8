"""A tally -> the report dict: today's JSON format (DOMAIN.md §7), every key kept, plus fixes.

Fixes over today's tool, as added keys: records outside the spec, records whose logged
config is not the spec's and records in another policy's folder are excluded from every
count (``out_of_spec``, ``config_mismatch``, ``misplaced``); ``--max-repeat`` lowers
``expected``; ``success_rate_all`` counts errors as failures; every success rate has a
Wilson 95% interval and a cluster bootstrap over tasks; ``paired_comparisons`` compares
policies on the episodes both completed validly; ``duplicates`` counts records beyond the
first of one episode (they are still counted, as today).

Every group sum comes from per-slot count arrays (numpy), so a report over 100,000 records
is derived in milliseconds from an up-to-date tally.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime
from typing import Any

import numpy as np

from benchmark.results import JSON_DECODE_ERROR, OS_ERROR
from reporting.spec_digest import SpecDigest
from reporting.stats import cluster_bootstraps, mcnemar_exact, paired_difference, wilson
from reporting.tally import (
    COMPLETED,
    CONFIG_MISMATCH,
    MISPLACED,
    NO_REPEAT,
    OUT_OF_SPEC,
    SUCCESSES,
    VALID,
    FolderTally,
    Tally,
)

DIMENSIONS = ("perturb_type", "severity", "timing")
TOP_ERRORS = 20
MAX_LISTED_PATHS = 20
IO_STATUSES = (JSON_DECODE_ERROR, OS_ERROR, "invalid", "unsupported_schema")


def build_report(tally: Tally, policies: list[str], *, results_dir: str, include_all_tasks: bool = False,
                 max_repeat: int | None = None, generated_at: str | None = None) -> dict[str, Any]:
    digest = tally.digest
    repeats = min(digest.repeats, max_repeat) if max_repeat else digest.repeats
    names = sorted(policies)
    empty = FolderTally(tally.slots)
    folders = {p: tally.folders.get(p, empty) for p in names}
    # (policy, count, setting, task, repeat) in spec order, only the repeats in scope.
    counts = {p: f.counts.reshape(3, *digest.shape)[:, :, :, :repeats] for p, f in folders.items()}
    caused = digest.caused_failure.reshape(digest.shape)[:, :, :repeats]
    observed = np.zeros(len(digest.tasks), dtype=bool)
    for c in counts.values():
        observed |= c[COMPLETED].sum(axis=(0, 2)) > 0
    tasks = list(range(len(digest.tasks))) if include_all_tasks else np.flatnonzero(observed).tolist()
    in_scope = _in_scope(max_repeat)
    per_policy = {p: _policy_report(digest, counts[p], caused, folders[p], tasks, repeats, in_scope) for p in names}
    global_errors: Counter = Counter()
    for p in names:
        global_errors.update(_labels(folders[p], in_scope))
    return {
        "generated_at": generated_at or datetime.now().isoformat(timespec="seconds"),
        "spec_summary": {
            "num_settings": len(digest.settings), "num_tasks": len(tasks),
            "repeats_per_setting": repeats, "total_per_policy": len(digest.settings) * len(tasks) * repeats,
            "name": digest.name, "sha256": digest.sha256, "verified_with": digest.provenance,
        },
        "has_caused_failure_data": digest.has_caused_failure_data,
        "policies": names,
        "io_errors": _io_errors(folders, results_dir),
        "per_policy": per_policy,
        "global_error_types": _top(global_errors),
        "cross_policy_by_setting": [
            {"setting_id": s.id, "perturb_type": s.perturb_type, "severity": s.severity, "timing": s.timing,
             **{p: per_policy[p]["per_setting"][index] for p in names}}
            for index, s in enumerate(digest.settings)
        ],
        "out_of_spec": _excluded(folders, OUT_OF_SPEC, in_scope),
        "config_mismatch": _excluded(folders, CONFIG_MISMATCH, in_scope),
        "misplaced": _excluded(folders, MISPLACED, in_scope),
        "duplicates": {p: n for p in names if (n := int(np.maximum(counts[p][COMPLETED] - 1, 0).sum()))},
        "paired_comparisons": _paired(names, counts, digest),
        "notes": [
            "records outside the spec (unknown settings or tasks, repeats beyond it) are excluded from every "
            "count and listed under out_of_spec",
            "records whose logged perturbation config differs from the spec's are excluded (config_mismatch)",
            "records in another policy's folder than the one they name are excluded (misplaced)",
            "expected counts use min(repeats_per_setting, --max-repeat)",
            "success_rate = successes/valid; success_rate_all = successes/completed (errors count as failures)",
            "*_ci95: Wilson 95% interval; *_ci95_cluster: bootstrap over tasks (repeats of a task share a scene)",
            "duplicates: records beyond the first for one episode; they are counted, paired comparisons skip "
            "episodes whose valid records disagree",
        ],
    }


def stats(completed: int, valid: int, successes: int, eff: tuple[int, int, int], expected: int,
          cluster_interval: tuple[float, float]) -> dict[str, Any]:
    """The stats of a group; ``cluster_interval``: the bootstrap over its tasks."""
    eff_total, eff_valid, eff_successes = eff
    return {
        "completed": completed,
        "expected": expected,
        "progress": completed / expected if expected else 0.0,
        "valid": valid,
        "errors": completed - valid,
        "successes": successes,
        "success_rate": successes / valid if valid else 0.0,
        "eff_total": eff_total,
        "eff_valid": eff_valid,
        "eff_successes": eff_successes,
        "eff_success_rate": eff_successes / eff_valid if eff_valid else 0.0,
        "success_rate_all": successes / completed if completed else 0.0,
        "success_rate_ci95": list(wilson(successes, valid)),
        "success_rate_ci95_cluster": list(cluster_interval),
        "success_rate_all_ci95": list(wilson(successes, completed)),
        "eff_success_rate_ci95": list(wilson(eff_successes, eff_valid)),
    }


def _policy_report(digest: SpecDigest, counts: np.ndarray, caused: np.ndarray, folder: FolderTally,
                   tasks: list[int], repeats: int, in_scope) -> dict[str, Any]:
    n_settings, n_tasks = len(digest.settings), len(tasks)
    # (count, setting, task) sums over repeats, and the same over the caused_failure episodes.
    grid = counts.sum(axis=3, dtype=np.int64)
    eff_grid = (counts * caused).sum(axis=3, dtype=np.int64)
    by_name = sorted(range(len(digest.tasks)), key=lambda t: digest.tasks[t])  # clusters in task-name order

    # Every group first, then all their bootstrap intervals in one batch.
    groups: list[tuple[list[int], list[int], int, list[tuple[int, int]]]] = []

    def group(g: np.ndarray, e: np.ndarray, expected: int) -> int:
        """Queue the group of (count, task) sums ``g`` (``e``: its caused_failure episodes)."""
        clusters = [(k, n) for k, n in zip(g[SUCCESSES, by_name].tolist(), g[VALID, by_name].tolist(), strict=True)
                    if n]
        groups.append((g.sum(axis=1).tolist(), e.sum(axis=1).tolist(), expected, clusters))
        return len(groups) - 1

    overall = group(grid.sum(axis=1), eff_grid.sum(axis=1), n_settings * n_tasks * repeats)
    settings = [group(grid[:, index], eff_grid[:, index], n_tasks * repeats) for index in range(n_settings)]
    dimensions: dict[str, dict[str, int]] = {}
    for dimension in DIMENSIONS:
        values: dict[str, list[int]] = {}
        for index, s in enumerate(digest.settings):
            values.setdefault(getattr(s, dimension), []).append(index)
        dimensions[dimension] = {value: group(grid[:, indices].sum(axis=1), eff_grid[:, indices].sum(axis=1),
                                              len(indices) * n_tasks * repeats) for value, indices in values.items()}
    task_totals, eff_totals = grid.sum(axis=1).T.tolist(), eff_grid.sum(axis=1).T.tolist()  # [task][count]
    for t in tasks:  # one cluster each: no bootstrap needed, but the same path
        c = task_totals[t]
        groups.append(([c[COMPLETED], c[VALID], c[SUCCESSES]], eff_totals[t], n_settings * repeats,
                       [(c[SUCCESSES], c[VALID])] if c[VALID] else []))
    intervals = cluster_bootstraps([g[3] for g in groups])
    done = [stats(c[COMPLETED], c[VALID], c[SUCCESSES], (e[COMPLETED], e[VALID], e[SUCCESSES]), expected, interval)
            for (c, e, expected, _), interval in zip(groups, intervals, strict=True)]
    per_setting = [{"setting_id": s.id, "perturb_type": s.perturb_type, "severity": s.severity, "timing": s.timing,
                    **done[settings[index]]} for index, s in enumerate(digest.settings)]
    per_dimension = {dimension: {value: done[i] for value, i in values.items()}
                     for dimension, values in dimensions.items()}
    first_task = len(groups) - len(tasks)
    per_task = [{"task": digest.tasks[t], **done[first_task + i]} for i, t in enumerate(tasks)]
    per_task.sort(key=lambda x: (x["progress"], x["success_rate"], x["task"]))
    cells = grid.tolist()  # [count][setting][task]
    return {
        "overall": done[overall],
        "error_types": _top(_labels(folder, in_scope)),
        "per_setting": per_setting,
        "per_dimension": per_dimension,
        "per_task": per_task,
        # Added: the setting x task grid (the HTML heatmap), in spec order.
        "per_setting_task": [
            {"setting_id": s.id, "task": digest.tasks[t], "completed": cells[COMPLETED][i][t],
             "valid": cells[VALID][i][t], "successes": cells[SUCCESSES][i][t],
             "success_rate": cells[SUCCESSES][i][t] / cells[VALID][i][t] if cells[VALID][i][t] else 0.0}
            for i, s in enumerate(digest.settings) for t in tasks if cells[COMPLETED][i][t]
        ],
    }


def _paired(names: list[str], counts: dict[str, np.ndarray], digest: SpecDigest) -> list[dict[str, Any]]:
    """Each pair of policies on the episodes both completed validly; an episode whose valid
    records (duplicates) disagree is left out for that policy."""
    n_settings = len(digest.settings)
    usable, success = {}, {}
    for p in names:
        valid = counts[p][VALID].reshape(n_settings, -1)
        successes = counts[p][SUCCESSES].reshape(n_settings, -1)
        usable[p] = (valid > 0) & ((successes == 0) | (successes == valid))
        success[p] = successes > 0
    comparisons = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = usable[a] & usable[b]
            table = {name: (shared & x & y).sum(axis=1).tolist() for name, x, y in (
                ("both", success[a], success[b]), ("a_only", success[a], ~success[b]),
                ("b_only", ~success[a], success[b]), ("neither", ~success[a], ~success[b]))}
            overall = {name: sum(values) for name, values in table.items()}
            comparisons.append({"policy_a": a, "policy_b": b, **_paired_stats(**overall),
                                "per_setting": [{"setting_id": s.id, **_paired_stats(
                                    **{name: values[index] for name, values in table.items()})}
                                    for index, s in enumerate(digest.settings)]})
    return comparisons


def _paired_stats(both: int, a_only: int, b_only: int, neither: int) -> dict[str, Any]:
    difference, low, high = paired_difference(both, a_only, b_only, neither)
    return {"pairs": both + a_only + b_only + neither, "both": both, "a_only": a_only, "b_only": b_only,
            "neither": neither, "difference": difference, "difference_ci95": [low, high],
            "mcnemar_p": mcnemar_exact(a_only, b_only)}


def _in_scope(max_repeat: int | None):
    """Whether a repeat index counts under ``--max-repeat`` (records with none always do)."""
    return lambda repeat: max_repeat is None or repeat == NO_REPEAT or repeat < max_repeat


def _labels(folder: FolderTally, in_scope) -> Counter:
    labels: Counter = Counter()
    for (label, repeat), n in folder.error_labels.items():
        if n and in_scope(repeat):
            labels[label] += n
    return labels


def _excluded(folders: dict[str, FolderTally], reason: str, in_scope) -> dict[str, int]:
    totals = {p: sum(n for (why, repeat), n in f.excluded.items() if why == reason and in_scope(repeat))
              for p, f in folders.items()}
    return {p: n for p, n in sorted(totals.items()) if n}


def _io_errors(folders: dict[str, FolderTally], results_dir: str) -> dict[str, Any]:
    """Today's two counts plus the other statuses, and the first unusable paths in path order."""
    problems = {path: why for f in folders.values() for path, why in f.problems.items()}
    counts = dict.fromkeys(IO_STATUSES, 0)
    for status, _ in problems.values():
        counts[status] = counts.get(status, 0) + 1
    first = sorted(problems, key=lambda path: path.split("/"))[:MAX_LISTED_PATHS]
    return {**counts, "first_paths": [{"path": os.path.join(results_dir, *path.split("/")), "status": problems[path][0],
                                       "problem": problems[path][1]} for path in first]}


def _top(counts: Counter) -> dict[str, int]:
    """The most common labels, ties by name: the same order however the records were read."""
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP_ERRORS])
