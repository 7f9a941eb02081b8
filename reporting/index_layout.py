"""The report index's table names and cache key, shared by ``reporting.index`` (SQLAlchemy,
which writes it) and ``reporting.warm_report`` (the standard library's sqlite3, which only
reads it on the path where nothing changed)."""

from __future__ import annotations

import dataclasses
import hashlib

import orjson

from benchmark.spec.slicing import SpecSlice

SCHEMA = 5  # in the table names: a new layout starts a new index beside the old tables
# The report's own format: raised when build_report's output changes (a new key), so that a
# report cached by an older rtbench is built again instead of served without it.
REPORT_FORMAT = 2  # 2: anytime
DIRECTORIES, ENTRIES, STATE = f"directories_v{SCHEMA}", f"directory_entries_v{SCHEMA}", f"state_v{SCHEMA}"
SPEC_FILES, DIGESTS = f"spec_files_v{SCHEMA}", f"spec_digests_v{SCHEMA}"
TALLIES, REPORTS = f"tallies_v{SCHEMA}", f"reports_v{SCHEMA}"


def report_key(version: int, spec_sha256: str, policies: list[str], include_all_tasks: bool,
               spec_slice: SpecSlice, stop_notes: str = "") -> str:
    """The cached report's key: the index version, every option that changes a report and the
    stop notes beside the records (``notes_fingerprint``)."""
    return hashlib.sha256(orjson.dumps({
        "format": REPORT_FORMAT, "version": version, "spec": spec_sha256, "policies": sorted(policies),
        "include_all_tasks": include_all_tasks, "slice": dataclasses.asdict(spec_slice),
        "stop_notes": stop_notes})).hexdigest()
