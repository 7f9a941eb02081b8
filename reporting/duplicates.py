"""Records named by path in the report: one record counted per episode (duplicates), and the
first duplicate and misplaced records listed with their paths, so that people can fix them."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from reporting.spec_digest import SpecDigest
from reporting.tally import COMPLETED, SUCCESSES, VALID, FolderTally

MAX_LISTED_PATHS = 20


def one_record_per_episode(folder: FolderTally) -> np.ndarray:
    """The folder's (count, slot) array with one record per episode: the record at the
    episode's own path if it is valid, else the first valid one in path order, else one error.
    Only slots with records elsewhere (``off_path``, rare) are looked at one by one."""
    counts = np.minimum(folder.counts, 1)
    elsewhere: dict[int, list[tuple[str, int, int]]] = {}
    for path, (slot, valid, success) in folder.off_path.items():
        elsewhere.setdefault(slot, []).append((path, valid, success))
    for slot, others in elsewhere.items():
        own_valid = folder.counts[VALID, slot] - sum(v for _, v, _ in others)  # the record at its own path
        own_success = folder.counts[SUCCESSES, slot] - sum(x for _, _, x in others)
        candidates = [(own_valid, own_success)] if own_valid > 0 else []
        candidates += [(v, x) for _, v, x in sorted(others, key=lambda item: item[0].split("/")) if v]
        counts[VALID, slot] = 1 if candidates else 0
        counts[SUCCESSES, slot] = 1 if candidates and candidates[0][1] else 0
    return counts


def duplicate_paths(digest: SpecDigest, folders: dict[str, FolderTally], slot_in_scope: np.ndarray,
                     results_dir: str) -> list[dict[str, Any]]:
    """The first episodes with more than one record (in scope), each with its record paths: the
    own path first (when there), then the others in path order."""
    found = []
    for policy, folder in folders.items():
        elsewhere: dict[int, list[str]] = {}
        for path, (slot, _, _) in folder.off_path.items():
            elsewhere.setdefault(slot, []).append(path)
        for slot, paths in elsewhere.items():
            if not slot_in_scope[slot] or folder.counts[COMPLETED, slot] < 2:
                continue
            key = _episode_path(digest, policy, slot)
            own = [key] if folder.counts[COMPLETED, slot] > len(paths) else []
            found.append({"episode": key[: -len(".json")],
                          "paths": [os.path.join(results_dir, *p.split("/"))
                                    for p in own + sorted(paths, key=lambda p: p.split("/"))]})
    return sorted(found, key=lambda item: item["episode"])[:MAX_LISTED_PATHS]


def _episode_path(digest: SpecDigest, policy: str, slot: int) -> str:
    n_tasks, repeats = len(digest.tasks), digest.repeats
    setting, rest = divmod(slot, n_tasks * repeats)
    task, repeat = divmod(rest, repeats)
    return f"{policy}/{digest.settings[setting].id}/{digest.tasks[task]}/episode_{repeat}.json"


def misplaced_paths(folders: dict[str, FolderTally], results_dir: str) -> list[dict[str, str]]:
    """The first records in another policy's folder than the one they name, in path order."""
    named = {path: policy for f in folders.values() for path, policy in f.misplaced.items()}
    first = sorted(named, key=lambda path: path.split("/"))[:MAX_LISTED_PATHS]
    return [{"path": os.path.join(results_dir, *path.split("/")), "names": named[path]} for path in first]
