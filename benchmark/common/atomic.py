"""Atomic file writes: a reader sees the old file or the whole new one, never half.

The bytes go to a hidden temp file in the same directory (same filesystem, so
``os.replace`` is atomic), are fsynced, then renamed over the target. On any
failure the temp file is removed and the target is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from benchmark.common.process_id import process_id


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes, *, sync_directory: bool = True,
                       sync_file: bool = True, temp_tag: str | None = None) -> Path:
    """Write ``data`` to ``path`` atomically and durably.

    With ``sync_directory=False`` the caller takes over the directory fsync (which makes the
    rename itself survive a crash) with ``fsync_directory``, e.g. off a hot path; with
    ``sync_file=False`` also the file's (``make_durable`` does both). Until then a crash of the
    machine (not of the process: the page cache outlives it) may leave the old file, no file or
    an empty one. ``temp_tag`` names the temp file (``.<name>.<tag>.<random>.tmp``; the process
    id by default), so that a writer that was killed can find its own leftovers again.
    """
    target = os.fspath(path)  # strings: pathlib's parsing was a tenth of a record's write
    folder, name = os.path.split(target)
    # A leading dot keeps the temp file out of every `episode_*.json` glob.
    tmp_name = os.path.join(
        folder, f".{name}.{temp_tag or process_id()}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 honours the umask (mkstemp would force 0o600, and result
    # files are read by other users and containers).
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    try:
        fd = os.open(tmp_name, flags, 0o666)
    except FileNotFoundError:  # no folder yet: made on demand, no mkdir per write
        os.makedirs(folder, exist_ok=True)
        fd = os.open(tmp_name, flags, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if sync_file:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, target)
    except BaseException:
        # BaseException too: Ctrl-C during a write must not leave a temp file behind.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    if sync_directory:
        fsync_directory(folder)
    return Path(target)


def make_durable(paths: Iterable[str | os.PathLike[str]]) -> dict[str, OSError]:
    """The fsyncs that ``write_bytes_atomic(sync_file=False, sync_directory=False)`` left out:
    each file's, then each folder's once. A file replaced or moved since needs none (its new
    writer synced it). Returns the files whose data could not be made durable, with the error:
    never retried, as a second fsync after a failed one may succeed without the data."""
    failed: dict[str, OSError] = {}
    folders: dict[str, None] = {}
    for path in map(os.fspath, paths):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        except OSError as exc:
            failed[path] = exc
            continue
        try:
            os.fsync(fd)
            folders[os.path.dirname(path)] = None
        except OSError as exc:
            failed[path] = exc
        finally:
            os.close(fd)
    for folder in folders:
        fsync_directory(folder)
    return failed


def fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make the rename itself durable (a crash right after must not lose it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # platforms without directory fds: the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; atomicity is unaffected
    finally:
        os.close(fd)
