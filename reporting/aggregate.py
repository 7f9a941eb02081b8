"""A tally -> the report dict: today's JSON format (docs/domain.md §7), every key kept, plus fixes.

Fixes over today's tool, as added keys: records outside the spec, records whose logged
config is not the spec's and records in another policy's folder are excluded from every
count (``out_of_spec``, ``config_mismatch``, ``misplaced``); ``--max-repeat`` lowers
``expected``; ``success_rate_all`` counts errors as failures; every success rate has a
Wilson 95% interval and a cluster bootstrap over tasks; ``paired_comparisons`` compares
policies on the episodes both completed validly; ``duplicates`` counts records beyond the
first of one episode, and only one record per episode is counted (today's tool counted all).

Every group sum comes from per-slot count arrays (numpy), so a report over 100,000 records
is derived in milliseconds from an up-to-date tally.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from datetime import datetime
from typing import Any

import numpy as np

from benchmark.common.names import select_names
from benchmark.records.results import JSON_DECODE_ERROR, OS_ERROR
from benchmark.records.stop_notes import read_stop_note
from benchmark.records.time_use import TimeUse
from benchmark.spec.slicing import WHOLE_SPEC, SpecSlice
from benchmark.spec.spec_file import Setting
from reporting.anytime import anytime_section
from reporting.duplicates import MAX_LISTED_PATHS, duplicate_paths, misplaced_paths, one_record_per_episode
from reporting.report_schema import GroupStats, IoErrors, PairedComparison, PairedStats, PolicyReport, Report
from reporting.spec_digest import SpecDigest
from reporting.stats import (
    FEW_TASKS,
    cluster_bootstrap_rows,
    mcnemar_exact,
    on_these_tasks_rows,
    over_tasks_rows,
    paired_difference,
    paired_over_tasks,
    wilson_many,
)
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
IO_STATUSES = (JSON_DECODE_ERROR, OS_ERROR, "invalid", "unsupported_schema")


def build_report(tally: Tally, policies: list[str], *, results_dir: str, include_all_tasks: bool = False,
                 spec_slice: SpecSlice = WHOLE_SPEC, generated_at: str | None = None) -> Report:
    """The report of ``policies`` on the slice of the spec (``--settings``, ``--tasks``,
    ``--max-repeat``: expected counts follow; an unknown name raises ``SpecError``)."""
    digest = tally.digest
    max_repeat = spec_slice.max_repeat
    repeats = min(digest.repeats, max_repeat) if max_repeat else digest.repeats
    chosen_settings = set(select_names(digest.name, "setting", spec_slice.settings, [s.id for s in digest.settings]))
    setting_rows = [i for i, s in enumerate(digest.settings) if s.id in chosen_settings]
    settings = [digest.settings[i] for i in setting_rows]
    chosen_tasks = set(select_names(digest.name, "task", spec_slice.tasks, list(digest.tasks)))
    task_mask = np.array([t in chosen_tasks for t in digest.tasks], dtype=bool)
    names = sorted(policies)
    empty = FolderTally(tally.slots)
    folders = {p: tally.folders.get(p, empty) for p in names}
    # (policy, count, setting, task, repeat) in spec order, only the settings and repeats in scope;
    # tasks out of scope count zero (the cluster bootstrap leaves out clusters without episodes).
    def in_scope_counts(flat: np.ndarray) -> np.ndarray:
        return flat.reshape(3, *digest.shape)[:, setting_rows, :, :repeats] * task_mask[None, None, :, None]

    counts = {p: in_scope_counts(one_record_per_episode(f)) for p, f in folders.items()}
    records_per_episode = {p: in_scope_counts(f.counts)[COMPLETED] for p, f in folders.items()}
    caused = digest.caused_failure.reshape(digest.shape)[setting_rows, :, :repeats]
    observed = np.zeros(len(digest.tasks), dtype=bool)
    for c in counts.values():
        observed |= c[COMPLETED].sum(axis=(0, 2)) > 0
    tasks = np.flatnonzero(task_mask if include_all_tasks else observed).tolist()
    slot_in_scope = _slots_in_scope(digest, setting_rows, task_mask, repeats)
    in_scope = _in_scope(max_repeat)
    layout = GroupLayout(settings, digest.tasks)
    per_policy = {p: _policy_report(settings, digest.tasks, counts[p], caused, folders[p], tasks, repeats,
                                    slot_in_scope, layout) for p in names}
    global_errors: Counter = Counter()
    for p in names:
        global_errors.update(_labels(folders[p], slot_in_scope))
    return {
        "generated_at": generated_at or datetime.now().isoformat(timespec="seconds"),
        "spec_summary": {
            "num_settings": len(settings), "num_tasks": len(tasks),
            "repeats_per_setting": repeats, "total_per_policy": len(settings) * len(tasks) * repeats,
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
            for index, s in enumerate(settings)
        ],
        "out_of_spec": _excluded(folders, OUT_OF_SPEC, in_scope),
        "config_mismatch": _excluded(folders, CONFIG_MISMATCH, in_scope),
        "misplaced": _excluded(folders, MISPLACED, in_scope),
        "duplicates": {p: n for p in names if (n := int(np.maximum(records_per_episode[p] - 1, 0).sum()))},
        "duplicate_paths": duplicate_paths(digest, folders, slot_in_scope, results_dir),
        "misplaced_paths": misplaced_paths(folders, results_dir),
        "paired_comparisons": _paired(names, counts, settings),
        "anytime": anytime_section(names, counts, [s.id for s in settings], tasks,
                                   {p: read_stop_note(results_dir, p, digest.sha256) for p in names}),
        "time_use": {p: _time_use(folders[p]) for p in names},
        "slice": {"settings": list(spec_slice.settings) if spec_slice.settings is not None else None,
                  "tasks": list(spec_slice.tasks) if spec_slice.tasks is not None else None,
                  "max_repeat": max_repeat},
        "notes": [
            "records outside the spec (unknown settings or tasks, repeats beyond it) are excluded from every "
            "count and listed under out_of_spec",
            "records whose logged perturbation config differs from the spec's are excluded (config_mismatch)",
            "records in another policy's folder than the one they name are excluded (misplaced; the first "
            "listed under misplaced_paths)",
            "duplicates: records beyond the first of one episode; one record counts per episode, the one at "
            "the episode's own path, else the first valid one in path order (duplicate_paths lists them)",
            "expected counts use min(repeats_per_setting, --max-repeat) and the settings and tasks of "
            "--settings and --tasks (slice); records of other settings and tasks are not counted",
            "success_rate = successes/valid; success_rate_all = successes/completed (errors count as failures)",
            "*_ci95: Wilson 95% interval; *_ci95_cluster: bootstrap over tasks (repeats of a task share a scene)",
            "on_these_tasks: the mean of the task success rates with its 95% interval for these tasks (only the "
            "repeats random); over_tasks: the same mean with its 95% interval for tasks like these (the tasks a "
            "draw too), approximate under 10 tasks; paired comparisons: on_these_tasks paired by episode, "
            "over_tasks paired by task (docs/statistics.md)",
            "time_use: where the episodes' time went (records with phases), per policy and machine, over every "
            "record of the policy in the spec whatever the slice; duty_cycle = policy seconds / episode wall "
            "seconds (benchmark/records/time_use.py)",
        ],
    }


def group_stats(counts: np.ndarray, eff: np.ndarray, expected: np.ndarray,
                cluster_interval: tuple[np.ndarray, np.ndarray], by_task: tuple[np.ndarray, np.ndarray]
                ) -> list[GroupStats]:
    """The stats of many groups at once: ``counts`` and ``eff`` are (count, group) arrays of
    all episodes and of the caused_failure ones; ``cluster_interval`` the bootstrap over tasks;
    ``by_task`` the (group, task) successes and valid episodes, for the named intervals."""
    completed, valid, successes = counts
    eff_total, eff_valid, eff_successes = eff
    with np.errstate(divide="ignore", invalid="ignore"):
        columns = {
            "completed": completed, "expected": expected,
            "progress": np.where(expected > 0, completed / expected, 0.0),
            "valid": valid, "errors": completed - valid, "successes": successes,
            "success_rate": np.where(valid > 0, successes / valid, 0.0),
            "eff_total": eff_total, "eff_valid": eff_valid, "eff_successes": eff_successes,
            "eff_success_rate": np.where(eff_valid > 0, eff_successes / eff_valid, 0.0),
            "success_rate_all": np.where(completed > 0, successes / completed, 0.0),
        }
    intervals = {"success_rate_ci95": wilson_many(successes, valid), "success_rate_ci95_cluster": cluster_interval,
                 "success_rate_all_ci95": wilson_many(successes, completed),
                 "eff_success_rate_ci95": wilson_many(eff_successes, eff_valid)}
    plain = {key: np.asarray(values).tolist() for key, values in columns.items()}
    pairs = {key: list(zip(low.tolist(), high.tolist(), strict=True)) for key, (low, high) in intervals.items()}
    # No episode whose perturbation caused a failure (every one of an unverified spec): no
    # effective rate, rather than a 0.0 that reads as "never succeeds where it matters".
    measured = np.asarray(eff_valid).tolist()
    plain["eff_success_rate"] = [rate if n else None for rate, n in zip(plain["eff_success_rate"], measured,
                                                                        strict=True)]
    pairs["eff_success_rate_ci95"] = [pair if n else None for pair, n in zip(pairs["eff_success_rate_ci95"],
                                                                            measured, strict=True)]
    order = list(columns) + list(intervals)
    these, over = _named(on_these_tasks_rows(*by_task)), _named(over_tasks_rows(*by_task))
    # Key order of today's report, then the intervals, then the named ones.
    return [{**{key: (_listed(pairs[key][i]) if key in pairs else plain[key][i]) for key in order},
             "on_these_tasks": these[i],
             "over_tasks": {**over[i], "approximate": over[i]["tasks"] < FEW_TASKS}}
            for i in range(len(plain["completed"]))]


def _listed(pair: tuple | None) -> list | None:
    return None if pair is None else list(pair)


def _named(rows: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> list[dict]:
    """(rate, low, high, tasks) arrays -> {rate, ci95, tasks} per group; no interval where the
    bounds are NaN (too few tasks); rate 0 and [0, 1] without tasks, as the other intervals."""
    rate, low, high, tasks = (a.tolist() for a in rows)
    return [{"rate": r, "ci95": None if math.isnan(lo) else [lo, hi], "tasks": int(t)}
            for r, lo, hi, t in zip(rate, low, high, tasks, strict=True)]


class GroupLayout:
    """The groups of a policy's report as rows of a (group, setting) membership matrix: overall,
    each setting, each value of each dimension."""

    def __init__(self, settings: list[Setting], tasks: tuple[str, ...]) -> None:
        rows = [[True] * len(settings)] + [[i == j for j in range(len(settings))] for i in range(len(settings))]
        self.dimensions: dict[str, dict[str, int]] = {}
        for dimension in DIMENSIONS:
            values: dict[str, list[bool]] = {}
            for index, s in enumerate(settings):
                values.setdefault(getattr(s, dimension), [False] * len(settings))[index] = True
            self.dimensions[dimension] = {}
            for value, member in values.items():
                self.dimensions[dimension][value] = len(rows)
                rows.append(member)
        self.members = np.array(rows, dtype=np.int64)
        self.settings_per_group = self.members.sum(axis=1)
        self.by_name = sorted(range(len(tasks)), key=lambda t: tasks[t])  # clusters' order


def _policy_report(settings: list[Setting], task_names: tuple[str, ...], counts: np.ndarray, caused: np.ndarray,
                   folder: FolderTally, tasks: list[int], repeats: int, slot_in_scope: np.ndarray,
                   layout: GroupLayout) -> PolicyReport:
    n_settings, n_tasks = len(settings), len(tasks)
    # (count, setting, task) sums over repeats, of all episodes and of the caused_failure ones.
    grid = counts.sum(axis=3, dtype=np.int64)
    eff_grid = (counts * caused).sum(axis=3, dtype=np.int64)
    groups = np.einsum("gs,kst->kgt", layout.members, grid)  # (count, group, task)
    eff_groups = np.einsum("gs,kst->kgt", layout.members, eff_grid)
    named = groups[:, :, layout.by_name]
    grouped = group_stats(groups.sum(axis=2), eff_groups.sum(axis=2), layout.settings_per_group * n_tasks * repeats,
                          cluster_bootstrap_rows(named[SUCCESSES], named[VALID]),
                          (groups[SUCCESSES][:, tasks], groups[VALID][:, tasks]))
    # Per task: one cluster each, so the "bootstrap" is the task's own rate.
    by_task, eff_by_task = grid.sum(axis=1)[:, tasks], eff_grid.sum(axis=1)[:, tasks]
    with np.errstate(divide="ignore", invalid="ignore"):
        own_rate = np.where(by_task[VALID] > 0, by_task[SUCCESSES] / by_task[VALID], 0.0)
    has_valid = by_task[VALID] > 0
    per_task = [{"task": task_names[t], **row} for t, row in zip(tasks, group_stats(
        by_task, eff_by_task, np.full(n_tasks, n_settings * repeats),
        (np.where(has_valid, own_rate, 0.0), np.where(has_valid, own_rate, 1.0)),
        (by_task[SUCCESSES][:, None], by_task[VALID][:, None])), strict=True)]
    per_task.sort(key=lambda x: (x["progress"], x["success_rate"], x["task"]))
    cells = grid.tolist()  # [count][setting][task]
    return {
        "overall": grouped[0],
        "error_types": _top(_labels(folder, slot_in_scope)),
        "per_setting": [{"setting_id": s.id, "perturb_type": s.perturb_type, "severity": s.severity,
                         "timing": s.timing, **grouped[1 + index]} for index, s in enumerate(settings)],
        "per_dimension": {dimension: {value: grouped[row] for value, row in values.items()}
                          for dimension, values in layout.dimensions.items()},
        "per_task": per_task,
        # Added: the setting x task grid (the HTML heatmap), in spec order.
        "per_setting_task": [
            {"setting_id": s.id, "task": task_names[t], "completed": cells[COMPLETED][i][t],
             "valid": cells[VALID][i][t], "successes": cells[SUCCESSES][i][t],
             "success_rate": cells[SUCCESSES][i][t] / cells[VALID][i][t] if cells[VALID][i][t] else 0.0}
            for i, s in enumerate(settings) for t in tasks if cells[COMPLETED][i][t]
        ],
    }


def _paired(names: list[str], counts: dict[str, np.ndarray], settings: list[Setting]) -> list[PairedComparison]:
    """Each pair of policies on the episodes both completed validly; an episode whose valid
    records (duplicates) disagree is left out for that policy."""
    usable, success = {}, {}
    for p in names:
        valid, successes = counts[p][VALID], counts[p][SUCCESSES]  # (setting, task, repeat)
        usable[p] = (valid > 0) & ((successes == 0) | (successes == valid))
        success[p] = successes > 0
    comparisons = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = usable[a] & usable[b]
            cells = {name: (shared & x & y).sum(axis=2) for name, x, y in (  # (setting, task)
                ("both", success[a], success[b]), ("a_only", success[a], ~success[b]),
                ("b_only", ~success[a], success[b]), ("neither", ~success[a], ~success[b]))}
            comparisons.append({"policy_a": a, "policy_b": b,
                                **_paired_stats({name: c.sum(axis=0) for name, c in cells.items()}),
                                "per_setting": [{"setting_id": s.id, **_paired_stats(
                                    {name: c[index] for name, c in cells.items()})}
                                    for index, s in enumerate(settings)]})
    return comparisons


def _paired_stats(by_task: dict[str, np.ndarray]) -> PairedStats:
    """The comparison of the episodes in ``by_task`` (name -> count per task): pooled over
    tasks (paired by episode), and over tasks (paired by task)."""
    both, a_only, b_only, neither = (int(by_task[name].sum()) for name in ("both", "a_only", "b_only", "neither"))
    difference, low, high = paired_difference(both, a_only, b_only, neither)
    pairs = by_task["both"] + by_task["a_only"] + by_task["b_only"] + by_task["neither"]
    shared = pairs > 0
    per_task = ((by_task["a_only"] - by_task["b_only"])[shared] / pairs[shared]).tolist()
    over = paired_over_tasks(per_task)
    over_tasks = {"difference": over[0] if over else (per_task[0] if per_task else 0.0),
                  "ci95": None if over is None or math.isnan(over[1]) else [over[1], over[2]],
                  "tasks": len(per_task), "approximate": len(per_task) < FEW_TASKS}
    return {"pairs": both + a_only + b_only + neither, "both": both, "a_only": a_only, "b_only": b_only,
            "neither": neither, "difference": difference, "difference_ci95": [low, high],
            "mcnemar_p": mcnemar_exact(a_only, b_only),
            "on_these_tasks": {"difference": difference, "ci95": [low, high]}, "over_tasks": over_tasks}


def _time_use(folder: FolderTally) -> dict[str, Any]:
    machines = {m: TimeUse(list(sums)) for m, sums in sorted(folder.time_use.items())}
    machines = {m: use for m, use in machines.items() if use.episodes > 0}
    overall = TimeUse()
    for use in machines.values():
        overall.add(use.sums)
    return {"overall": overall.summary(), "machines": {m: use.summary() for m, use in machines.items()}}


def _in_scope(max_repeat: int | None):
    """Whether an excluded record's repeat index counts under ``--max-repeat`` (records with none
    always do). Excluded records are kept by repeat only: ``--settings`` and ``--tasks`` do not
    filter them (an out-of-spec record may name no known setting or task)."""
    return lambda repeat: max_repeat is None or repeat == NO_REPEAT or repeat < max_repeat


def _slots_in_scope(digest: SpecDigest, setting_rows: list[int], task_mask: np.ndarray, repeats: int) -> np.ndarray:
    """Per episode slot of the spec: whether the slice holds it."""
    scope = np.zeros(digest.shape, dtype=bool)
    scope[np.ix_(setting_rows, np.flatnonzero(task_mask), np.arange(repeats))] = True
    return scope.reshape(-1)


def _labels(folder: FolderTally, slot_in_scope: np.ndarray) -> Counter:
    labels: Counter = Counter()
    for (label, slot), n in folder.error_labels.items():
        if n and slot_in_scope[slot]:
            labels[label] += n
    return labels


def _excluded(folders: dict[str, FolderTally], reason: str, in_scope) -> dict[str, int]:
    totals = {p: sum(n for (why, repeat), n in f.excluded.items() if why == reason and in_scope(repeat))
              for p, f in folders.items()}
    return {p: n for p, n in sorted(totals.items()) if n}


def _io_errors(folders: dict[str, FolderTally], results_dir: str) -> IoErrors:
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
