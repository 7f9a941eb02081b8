"""Stop rules' view of records: a record's outcome, and the note a stopped slice leaves
beside its records.

The note, ``<results>/<policy>/stopped-<sha12>.json``: a worker whose stop rule held writes
it (``worker/stop_check.py``), with the note Redis kept first, so every machine that writes
one writes the same bytes; the results sync commits it with the records (it is in the sync
journal), and ``rtbench-report``, which reads files only, says from it that the run stopped,
by which rule and after which round.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from benchmark.common.atomic import write_bytes_atomic
from benchmark.records.journal import note_written

PREFIX = "stopped-"


def note_name(spec_sha: str) -> str:
    return f"{PREFIX}{spec_sha[:12]}.json"


def write_stop_note(results_dir: str | os.PathLike[str], policy: str, note: dict[str, Any]) -> Path:
    """Write the note (atomically, durably) and name it in the sync journal."""
    relative = f"{policy}/{note_name(note['spec_sha256'])}"
    data = (json.dumps(note, indent=2, sort_keys=True) + "\n").encode()
    path = write_bytes_atomic(os.path.join(results_dir, relative), data)
    note_written(results_dir, relative)
    return path


def read_stop_note(results_dir: str | os.PathLike[str], policy: str, spec_sha: str) -> dict[str, Any] | None:
    """The note of ``policy``'s slice of the spec; None when there is none or it cannot be read
    (a note is a statement about the run, never a reason to fail the report)."""
    try:
        with open(os.path.join(results_dir, policy, note_name(spec_sha)), "rb") as handle:
            note = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    if not isinstance(note, dict) or note.get("spec_sha256") != spec_sha:
        return None
    return note


def outcome_code(record: dict[str, Any], done: bool) -> str | None:
    """A written record's outcome for stop rules: '1' success, '0' failure, 'e' a deterministic
    error (the round has its episode, the rate has no observation); None when not done (an
    infrastructure error: the episode is sent again, its round stays open)."""
    if not done:
        return None
    if record.get("error") is not None:
        return "e"
    return "1" if record.get("success") else "0"


def notes_fingerprint(results_dir: str | os.PathLike[str], policies: list[str]) -> str:
    """The stop notes of ``policies`` by name, size and modification time: part of the cached
    report's key (a note changes the report, not the records the index follows)."""
    found = []
    for policy in sorted(policies):
        try:
            with os.scandir(os.path.join(results_dir, policy)) as entries:
                for entry in entries:
                    if entry.name.startswith(PREFIX) and entry.name.endswith(".json"):
                        info = entry.stat()
                        found.append(f"{policy}/{entry.name}:{info.st_size}:{info.st_mtime_ns}")
        except OSError:
            continue
    return "|".join(sorted(found))
