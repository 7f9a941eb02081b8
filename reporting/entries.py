"""One record file -> an index entry: the few fields a report needs, keyed by name, size and mtime.

An entry is a plain list (compact, and orjson stores lists of str/int/bool directly), read
through the positions below:

    [name, size, mtime_ns, status, problem, policy, setting_id, task, repeat_idx, success,
     error_type, config_hash]

``status`` is ``ok`` or why the file is unusable (``problem`` says more); the record fields
are None for unusable files. ``error_type`` is the normalized error label (None when valid);
``config_hash`` is the canonical identity of the logged perturbation config (None when the
record logs none).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import orjson

from benchmark.results import OK, OS_ERROR, error_label, parse_record

NAME, SIZE, MTIME, STATUS, PROBLEM, POLICY, SETTING, TASK, REPEAT, SUCCESS, ERROR_TYPE, CONFIG_HASH = range(12)
NO_IDENTITY = "missing policy/setting/task"


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


def entry_from_bytes(raw: bytes, path: str, results_dir: str, name: str, size: int, mtime_ns: int) -> list:
    """The entry of one record file's bytes (never raises for a bad file)."""
    read = parse_record(raw, path, results_dir, fast_loads=orjson.loads)
    if read.status != OK:
        return [name, size, mtime_ns, read.status, read.problem] + [None] * 7
    record = read.record
    policy, setting_id, task = record.get("policy"), record.get("setting_id"), record.get("task")
    if not (isinstance(policy, str) and isinstance(setting_id, str) and isinstance(task, str)):
        return [name, size, mtime_ns, "invalid", NO_IDENTITY] + [None] * 7
    repeat_idx = record.get("repeat_idx")
    error = record.get("error")
    config = logged_config(record)
    return [name, size, mtime_ns, OK, None, policy, setting_id, task,
            repeat_idx if isinstance(repeat_idx, int) else None, bool(record.get("success")) and error is None,
            error_label(error), config_hash(config) if config is not None else None]


def read_entry(directory_fd: int, directory_path: str, results_dir: str, name: str) -> list:
    """Open, ``fstat`` and read one file of an open directory: the size and mtime stored are
    those of the bytes read, so a file replaced meanwhile is simply read again next time."""
    try:
        fd = os.open(name, os.O_RDONLY, dir_fd=directory_fd)
    except OSError as exc:
        return [name, -1, -1, OS_ERROR, exc.strerror or str(exc)] + [None] * 7
    try:
        info = os.fstat(fd)
        raw = os.read(fd, info.st_size + 1)  # a short read of a regular file is its end
        if len(raw) > info.st_size:  # it grew since fstat: read the rest
            chunks = [raw]
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            raw = b"".join(chunks)
    except OSError as exc:
        return [name, -1, -1, OS_ERROR, exc.strerror or str(exc)] + [None] * 7
    finally:
        os.close(fd)
    return entry_from_bytes(raw, f"{directory_path}{os.sep}{name}", results_dir, name, info.st_size,
                            info.st_mtime_ns)
