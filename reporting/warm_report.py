"""The report of a tree where nothing changed since the last one, from the index's cache, with
the standard library only (sqlite3, os.stat): a command people run every few minutes should
not pay for importing SQLAlchemy, numpy and the aggregation to learn that nothing is new.

The check is the index's own (``reporting.index``): every known directory in scope keeps its
mtime, no policy folder is new, the spec file keeps its path, size and mtime, and a report
was cached under the same version and options. Anything else (including an index of another
layout, or one being written) returns None, and the full path runs.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from benchmark.records.stop_notes import notes_fingerprint
from benchmark.spec.slicing import SpecSlice
from benchmark.spec.spec_paths import resolve_spec_path
from reporting.index_layout import DIRECTORIES, REPORTS, SPEC_FILES, STATE, report_key


def cached_report(results_dir: Path, index_path: Path, spec_ref: str, policies: list[str], *, whole_tree: bool,
                  include_all_tasks: bool, spec_slice: SpecSlice) -> dict[str, Any] | None:
    """The last report, when nothing it depends on changed; else None."""
    if not index_path.is_file():
        return None
    try:
        spec_path = resolve_spec_path(spec_ref)
        spec_info = spec_path.stat()
        connection = sqlite3.connect(f"{index_path.resolve().as_uri()}?mode=ro", uri=True, timeout=1.0)
    except (OSError, sqlite3.Error, ValueError):
        return None
    try:
        with connection:  # one read transaction: a consistent snapshot of the index
            connection.execute("BEGIN")
            version = connection.execute(f"SELECT value FROM {STATE} WHERE key = 'version'").fetchone()
            sha = connection.execute(f"SELECT sha256 FROM {SPEC_FILES} WHERE path = ? AND size = ? AND mtime_ns = ?",
                                     (os.fspath(spec_path.resolve()), spec_info.st_size,
                                      spec_info.st_mtime_ns)).fetchone()
            if version is None or sha is None:
                return None
            known = dict(connection.execute(f"SELECT path, mtime_ns FROM {DIRECTORIES}").fetchall())
            if not _unchanged(os.fspath(results_dir), known, policies, whole_tree):
                return None
            key = report_key(version[0], sha[0], policies, include_all_tasks, spec_slice,
                             notes_fingerprint(results_dir, policies))
            cached = connection.execute(f"SELECT report FROM {REPORTS} WHERE key = ?", (key,)).fetchone()
    except sqlite3.Error:  # another layout, a lock held too long, a damaged file: the full path decides
        return None
    finally:
        connection.close()
    if cached is None:
        return None
    report = orjson.loads(cached[0])
    report["generated_at"] = datetime.now().isoformat(timespec="seconds")
    return report


def _unchanged(root: str, known: dict[str, int], policies: list[str], whole_tree: bool) -> bool:
    """Whether every known directory in scope keeps its mtime and every policy folder is known."""
    if any(policy not in known for policy in policies):
        return False
    scope, prefix = set(policies), root + os.sep
    for path, mtime in known.items():
        if not whole_tree and path.split("/", 1)[0] not in scope:
            continue
        try:
            if os.stat(prefix + path).st_mtime_ns != mtime:
                return False
        except OSError:
            return False
    return True
