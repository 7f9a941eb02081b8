"""Reading a results tree directory by directory, into index entries.

The same walk as ``benchmark.results.iter_record_paths``: ``episode_*.json`` files, no hidden
names (atomic-write temp files are hidden), no ``videos/``, symlinked folders below the policy
level not followed. A directory (and a file) modified within ``SETTLE_NS`` of the scan is
stored as unsettled, so that the next run looks at it again: a change in the same clock
tick as the scan would otherwise go unseen.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from benchmark.results import SKIPPED_DIRS
from reporting.entries import MTIME, NAME, SIZE, read_entry

UNSETTLED = -1
SETTLE_NS = 2_000_000_000
PARALLEL_UNITS = 4  # subtrees to read before a process pool pays for itself


@dataclass(slots=True)
class DirectoryScan:
    path: str  # relative to the results dir, "/"-separated; its first part is the policy folder
    mtime_ns: int  # UNSETTLED when too recent to trust
    subdirs: list[str] = field(default_factory=list)
    entries: list[list] = field(default_factory=list)


def scan_directory(results_dir: str, path: str, old_entries: dict[str, list] | None = None,
                   settled_before: int | None = None) -> DirectoryScan:
    """List one directory and read its record files; a file whose size and mtime match its
    entry in ``old_entries`` is not read again."""
    settled_before = settled_before if settled_before is not None else time.time_ns() - SETTLE_NS
    absolute = os.path.join(results_dir, *path.split("/"))
    fd = os.open(absolute, os.O_RDONLY | os.O_DIRECTORY)
    try:
        mtime = os.fstat(fd).st_mtime_ns
        scan = DirectoryScan(path, mtime if mtime < settled_before else UNSETTLED)
        with os.scandir(fd) as listing:
            items = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in listing if not e.name.startswith("."))
        for name, is_dir in items:
            if is_dir:
                if name not in SKIPPED_DIRS:
                    scan.subdirs.append(name)
                continue
            if not (name.startswith("episode_") and name.endswith(".json")):
                continue
            old = old_entries.get(name) if old_entries else None
            if old is not None:
                try:
                    info = os.stat(name, dir_fd=fd)
                except OSError:
                    info = None
                if info is not None and (info.st_size, info.st_mtime_ns) == (old[SIZE], old[MTIME]):
                    scan.entries.append(old)
                    continue
            entry = read_entry(fd, absolute, results_dir, name)
            if entry[MTIME] >= settled_before:
                entry[MTIME] = UNSETTLED  # read again next time
                scan.mtime_ns = UNSETTLED
            scan.entries.append(entry)
    finally:
        os.close(fd)
    return scan


def scan_tree(results_dir: str, path: str, settled_before: int | None = None) -> list[DirectoryScan]:
    """Every directory of a subtree, every file read."""
    scans, stack = [], [path]
    while stack:
        try:
            scan = scan_directory(results_dir, stack.pop(), settled_before=settled_before)
        except (FileNotFoundError, NotADirectoryError):
            continue  # removed while we walked
        scans.append(scan)
        stack.extend(f"{scan.path}/{name}" for name in reversed(scan.subdirs))
    return scans


def scan_trees(results_dir: str, roots: list[str], workers: int | None = None) -> list[DirectoryScan]:
    """Read new subtrees, in parallel when there are many: each root is listed here and its
    subdirectories are read by a pool of processes (forked: they start in milliseconds)."""
    settled_before = time.time_ns() - SETTLE_NS
    scans, units = [], []
    for root in roots:
        try:
            top = scan_directory(results_dir, root, settled_before=settled_before)
        except (FileNotFoundError, NotADirectoryError):
            continue
        scans.append(top)
        units.extend(f"{root}/{name}" for name in top.subdirs)
    workers = workers or os.cpu_count() or 1
    if len(units) < PARALLEL_UNITS or workers < 2 or "fork" not in multiprocessing.get_all_start_methods():
        for unit in units:
            scans.extend(scan_tree(results_dir, unit, settled_before))
        return scans
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
        for part in pool.map(scan_tree, [results_dir] * len(units), units, [settled_before] * len(units)):
            scans.extend(part)
    return scans


def entries_by_name(entries: list[list]) -> dict[str, list]:
    return {entry[NAME]: entry for entry in entries}
