"""One record file -> an index entry: the few fields a report needs, keyed by name, size and mtime.

The index stores an entry as a JSON array of ``Entry``'s fields in their order (compact: orjson
writes tuples of str/int/bool directly), so code that reads many stored entries at once unpacks
them in that order (``Tally``) rather than building an ``Entry`` for each.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, NamedTuple

import orjson

from benchmark.records.results import OK, OS_ERROR, error_label, parse_record
from benchmark.records.time_use import episode_sums, machine_of

NO_IDENTITY = "missing policy/setting/task"


class Entry(NamedTuple):
    """What a report needs of one record file."""

    name: str  # file name in its directory
    size: int  # bytes read (-1 when the file could not be read)
    mtime_ns: int  # of the bytes read; UNSETTLED (-1) when too recent to trust (read again next time)
    status: str  # ``ok``, or why the file is unusable (``invalid``, ``os_error``, ...)
    problem: str | None  # what is wrong with an unusable file, for the report's problem list
    policy: str | None  # the record's own fields, None for unusable files ...
    setting_id: str | None
    task: str | None
    repeat_idx: int | None  # None when the record has none (or not an int)
    success: bool | None  # True only for a success without error
    error_type: str | None  # the normalized error label (None when valid)
    config_hash: str | None  # identity of the logged perturbation config (None when none logged)
    machine: str | None  # where it ran (worker.machine)
    time_sums: tuple[float, ...] | None  # its share of benchmark.records.time_use.SUMS (None: no phases)

    @classmethod
    def unusable(cls, name: str, size: int, mtime_ns: int, status: str, problem: str | None) -> Entry:
        return cls(name, size, mtime_ns, status, problem, None, None, None, None, None, None, None, None, None)

    @classmethod
    def from_stored(cls, stored: bytes) -> list[Entry]:
        """Entries as the index stores them (a JSON array of arrays in field order)."""
        return list(map(cls._make, orjson.loads(stored)))


def stored_entries(entries: list[Entry]) -> bytes:
    """The form the index stores (orjson writes plain tuples, not NamedTuples)."""
    return orjson.dumps(entries, default=tuple)


def config_hash(config: Any) -> str:
    """Canonical identity of a perturbation config (``caused_failure`` is a label, not identity)."""
    if isinstance(config, dict) and "caused_failure" in config:
        config = {k: v for k, v in config.items() if k != "caused_failure"}
    # orjson: sorted keys, shortest float repr; ~10x faster than json.dumps on 196-float matrices.
    return hashlib.blake2b(orjson.dumps(config, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()


def logged_config(record: dict[str, Any]) -> dict[str, Any] | None:
    """The config a record logged: ``perturbation_log.config`` or today's flat form."""
    log = record.get("perturbation_log")
    if not isinstance(log, dict):
        return None
    if isinstance(log.get("config"), dict):
        return log["config"]
    return log if "perturbation_type" in log else None


def entry_from_bytes(raw: bytes, path: str, results_dir: str, name: str, size: int, mtime_ns: int) -> Entry:
    """The entry of one record file's bytes (never raises for a bad file)."""
    read = parse_record(raw, path, results_dir, fast_loads=orjson.loads)
    if read.status != OK:
        return Entry.unusable(name, size, mtime_ns, read.status, read.problem)
    record = read.record
    policy, setting_id, task = record.get("policy"), record.get("setting_id"), record.get("task")
    if not (isinstance(policy, str) and isinstance(setting_id, str) and isinstance(task, str)):
        return Entry.unusable(name, size, mtime_ns, "invalid", NO_IDENTITY)
    repeat_idx = record.get("repeat_idx")
    error = record.get("error")
    config = logged_config(record)
    return Entry(name, size, mtime_ns, OK, None, policy, setting_id, task,
                 repeat_idx if isinstance(repeat_idx, int) else None, bool(record.get("success")) and error is None,
                 error_label(error), config_hash(config) if config is not None else None, machine_of(record),
                 episode_sums(record))


def read_entry(directory_fd: int, directory_path: str, results_dir: str, name: str) -> Entry:
    """Open, ``fstat`` and read one file of an open directory: the size and mtime stored are
    those of the bytes read, so a file replaced meanwhile is simply read again next time."""
    try:
        fd = os.open(name, os.O_RDONLY, dir_fd=directory_fd)
    except OSError as exc:
        return Entry.unusable(name, -1, -1, OS_ERROR, exc.strerror or str(exc))
    try:
        info = os.fstat(fd)
        raw = os.read(fd, info.st_size + 1)  # a short read of a regular file is its end
        if len(raw) > info.st_size:  # it grew since fstat: read the rest
            chunks = [raw]
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            raw = b"".join(chunks)
    except OSError as exc:
        return Entry.unusable(name, -1, -1, OS_ERROR, exc.strerror or str(exc))
    finally:
        os.close(fd)
    return entry_from_bytes(raw, f"{directory_path}{os.sep}{name}", results_dir, name, info.st_size,
                            info.st_mtime_ns)
