"""Writing a file that may already hold another version: the rule decides, the loser is kept.

Two versions of one episode meet in three places: a worker writes an episode whose file a pull
brought meanwhile (a re-delivered message that ran on two machines), a pull brings a version of
a file this machine wrote since its last push, and two pushes race. Each place settles the pair
with the same ``prefer`` rule (``benchmark.records.results.preferred_record`` for records), so every
machine ends with the same winner whatever the order; the loser is never deleted, it is kept
under ``.rtbench/conflicts/`` beside the results folder.

Writers of one folder take an exclusive ``flock`` on the folder itself while they read the old
version and replace it, so a worker and the results sync never both decide on one file.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmark.common.atomic import write_bytes_atomic

CONFLICTS = "conflicts"


@dataclass(frozen=True)
class Settled:
    """What a settled write did: whether ``data`` is now the file, and where a loser was kept."""

    written: bool
    kept: Path | None = None


@contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Exclusive, for the writers of one folder (the kernel frees it if the holder dies)."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:  # made on demand: no mkdir before each write
        os.makedirs(folder, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def keep_loser(conflicts_dir: Path | Callable[[], Path], relative: str,
               raw: bytes, who: str) -> Path:
    """Keep a losing version as ``<conflicts_dir>/<relative>.<who>.<ns>``
    (written atomically). ``conflicts_dir`` may be a function that finds it:
    only a conflict needs it."""
    if callable(conflicts_dir):
        conflicts_dir = conflicts_dir()
    kept = conflicts_dir / f"{relative}.{who}.{time.time_ns()}"
    return write_bytes_atomic(kept, raw)


def write_settled(target: str | os.PathLike[str], data: bytes, *,
                  prefer: Callable[[bytes, bytes], bool],
                  conflicts_dir: Path | Callable[[], Path],
                  relative: str, who: Callable[[bytes], str],
                  replaceable: Callable[[bytes], bool] = lambda _old: False,
                  sync_directory: bool = True, sync_file: bool = True,
                  temp_tag: str | None = None) -> Settled:
    """Write ``data`` to ``target`` unless the file holds a version that ``prefer`` ranks first.

    ``prefer(a, b)``: whether ``a`` wins over ``b``. ``replaceable(old)``: the old bytes are not
    a competing version (e.g. what the last commit held) and are replaced without a contest.
    The loser is kept first, then the winner written: a kill in between leaves both versions.
    ``sync_directory``, ``sync_file``, ``temp_tag``: see ``write_bytes_atomic``
    (a kept loser is always synced); ``conflicts_dir``: see
    ``keep_loser``.
    """
    with folder_lock(os.path.dirname(target)):
        try:
            with open(target, "rb") as handle:
                old = handle.read()
        except FileNotFoundError:
            old = None
        if old is None or old == data or replaceable(old):
            if old != data:
                write_bytes_atomic(target, data, sync_directory=sync_directory, sync_file=sync_file,
                                   temp_tag=temp_tag)
            return Settled(written=True)
        if prefer(data, old):
            kept = keep_loser(conflicts_dir, relative, old, who(old))
            write_bytes_atomic(target, data, sync_directory=sync_directory, sync_file=sync_file,
                               temp_tag=temp_tag)
            return Settled(written=True, kept=kept)
        return Settled(written=False, kept=keep_loser(conflicts_dir, relative, data, who(data)))
