"""The journal of written records, which the results sync stages (``worker.sync``).

Every record ``benchmark.records.results.write_record`` writes (queue workers, the static runner, the
embedded mode) appends its path, relative to the results folder, to
``<results>/../.rtbench/sync-journal``: so a sync cycle stages exactly the records written
since the last one instead of scanning the tree. One ``O_APPEND`` write per line, so lines of
concurrent writers never interleave. A writer holds a shared ``flock`` while it appends and
checks that the file is still the live journal; the sync cycle renames the journal aside,
then takes the lock exclusively before reading it, so no line lands in a part already read.
The journal is a hint, not the truth: a line lost in a crash (a writer killed between its
record and its line) or to a failed append is found again by a scan of the results folder, which
the sync runs every hour, at once when a writer left ``sync-scan-needed`` after a failed append,
and by hand with ``python -m worker sync --once --scan``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

JOURNAL_NAME = "sync-journal"
SCAN_NEEDED = "sync-scan-needed"  # beside the journal: a line could not be appended, scan soon
_LOOKUP_EVERY_S = 1.0
_looked_up: dict[str, tuple[float, Path]] = {}  # results folder as given -> (when, journal path)


def state_dir(results_dir: str | os.PathLike[str]) -> Path:
    """rtbench's own files beside a results folder (``.rtbench/``: journal, locks, report index).
    Beside the real folder: writers and the sync that reach it through a symlink share them.
    Inside it when the results folder is a clone's top: the state stays in the clone (and in the
    volume every container of the machine shares), ignored by git and by record scans."""
    real = Path(os.path.realpath(results_dir))
    if (real / ".git").exists():
        return real / ".rtbench"
    return real.parent / ".rtbench"


def journal_path(results_dir: str | os.PathLike[str]) -> Path:
    return state_dir(results_dir) / JOURNAL_NAME


def read_part(part: Path) -> list[str]:
    """The lines of a journal part moved aside, once the writers that had it open are done."""
    with open(part, "rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        return handle.read().decode(errors="replace").splitlines()


def make_state_dir(results_dir: str | os.PathLike[str]) -> Path:
    """Create ``.rtbench/``, ignored by git (it may sit inside the results clone)."""
    directory = state_dir(results_dir)
    directory.mkdir(parents=True, exist_ok=True)
    ignore = directory / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# rtbench's local state (journal, locks, index): never committed\n*\n")
    return directory


def _journal_of_writer(results_dir: str | os.PathLike[str]) -> Path:
    """``journal_path``, looked up again at most once a second per results folder: the lookup
    (a realpath, a stat) was half of a line's cost, at every record. A clone made at the results
    folder or a symlink repointed is followed within a second; a line written to the old journal
    meanwhile is a missed line, found by the sync's scan like any other."""
    key, now = os.fspath(results_dir), time.monotonic()
    found = _looked_up.get(key)
    if found is None or now - found[0] >= _LOOKUP_EVERY_S:
        found = _looked_up[key] = now, journal_path(results_dir)
    return found[1]


def note_written(results_dir: str | os.PathLike[str], relative_path: str) -> None:
    """Append one written record's path. Never raises: the record is written either way, and a
    missed line costs only a ``--scan``."""
    path = _journal_of_writer(results_dir)
    try:
        for _ in range(100):  # a rename by the sync cycle between open and lock: open the new one
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            except FileNotFoundError:
                make_state_dir(results_dir)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                if os.fstat(fd).st_ino == os.stat(path).st_ino:
                    os.write(fd, (relative_path + "\n").encode())
                    return
            except FileNotFoundError:
                pass  # renamed away by the cycle after our open: the loop opens the new journal
            finally:
                os.close(fd)
        raise OSError(f"{path} kept changing while a line was appended")
    except OSError as exc:
        log.warning("could not note %s in the sync journal %s (%s); the sync's next scan finds it", relative_path,
                    path, exc)
        with contextlib.suppress(OSError):  # an empty file: it needs an inode, not a block
            (path.parent / SCAN_NEEDED).touch()
