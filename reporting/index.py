"""An SQLite index of a results tree (SQLAlchemy), so that a re-run reads only what changed.

What it holds, under the results dir's parent ``.rtbench/`` by default:

- one row per directory with its mtime, and one with the entries of its record files
  (``reporting.entries``: the fields a report needs, keyed by file name, size and mtime);
- a version number, raised whenever an entry changes;
- the tally of the last spec used (``reporting.tally``) at that version, from which a
  report is derived in milliseconds, and a digest of the spec (``reporting.spec_digest``)
  so that a re-run does not parse it;
- the last report, under its version and options.

How a re-run finds changes: every known directory is stat-ed; one whose mtime is unchanged
is trusted, with its files and subdirectories. Records are replaced by creating or renaming files (rtbench's
writers, git, rsync), which changes their directory's mtime, so a changed directory is
listed again and its files are stat-ed: a file whose size and mtime match its entry is not
read again. A file rewritten in place (``open(path, "w")``, ``cp`` over it) leaves its
directory's mtime alone: ``--rescan`` stats every file, and ``--no-index`` reads them all.
The report is the same with and without the index (a test checks it on a changing tree).
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy.dialects.sqlite  # noqa: F401 - loaded here, not lazily inside the first report
from sqlalchemy import Integer, LargeBinary, String, create_engine, event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from benchmark.records.journal import make_state_dir, state_dir
from benchmark.records.stop_notes import notes_fingerprint
from benchmark.spec.slicing import WHOLE_SPEC, SpecSlice
from benchmark.spec.spec_file import resolve_spec_path
from reporting.aggregate import build_report
from reporting.entries import Entry
from reporting.errors import ReportError
from reporting.index_layout import DIGESTS, DIRECTORIES, ENTRIES, REPORTS, SPEC_FILES, STATE, TALLIES, report_key
from reporting.scan import rescan_directories, scan_trees
from reporting.spec_digest import SpecDigest
from reporting.tally import Tally

LOCK_WAIT_S = 60.0  # how long a report waits for another one updating the same index

log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    pass


class IndexedDirectory(Base):
    """What the walk needs, in small rows: a run stats every one of them."""

    __tablename__ = DIRECTORIES
    path: Mapped[str] = mapped_column(String, primary_key=True)  # relative to the results dir
    mtime_ns: Mapped[int] = mapped_column(Integer)  # UNSETTLED: list it again next time


class DirectoryEntries(Base):
    """The entries of a directory's record files, read only when the directory changed."""

    __tablename__ = ENTRIES
    path: Mapped[str] = mapped_column(String, primary_key=True)
    entries: Mapped[bytes] = mapped_column(LargeBinary)  # JSON list of entries


class IndexState(Base):
    __tablename__ = STATE
    key: Mapped[str] = mapped_column(String, primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


class SpecFile(Base):
    """A spec file's identity by (path, size, mtime), so a re-run need not read 25 MB to hash it."""

    __tablename__ = SPEC_FILES
    path: Mapped[str] = mapped_column(String, primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    mtime_ns: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String)


class StoredDigest(Base):
    __tablename__ = DIGESTS
    sha256: Mapped[str] = mapped_column(String, primary_key=True)
    meta: Mapped[bytes] = mapped_column(LargeBinary)
    caused_failure: Mapped[bytes] = mapped_column(LargeBinary)


class StoredTally(Base):
    __tablename__ = TALLIES
    spec_sha256: Mapped[str] = mapped_column(String, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    meta: Mapped[bytes] = mapped_column(LargeBinary)
    counts: Mapped[bytes] = mapped_column(LargeBinary)


class CachedReport(Base):
    __tablename__ = REPORTS
    key: Mapped[str] = mapped_column(String, primary_key=True)
    report: Mapped[bytes] = mapped_column(LargeBinary)


# Queries are plain SQL on these tables: compiling SQLAlchemy statements costs about 1 ms each in a
# fresh process, a tenth of a re-run's time.


@dataclass
class Change:
    """The entries that left and came in one known directory."""

    path: str
    removed: list[Entry]
    added: list[Entry]


class RecordIndex:
    """The index of one results dir."""

    def __init__(self, results_dir: Path, index_path: Path) -> None:
        self.root = os.fspath(results_dir)
        self.index_path = index_path
        if index_path.parent == state_dir(results_dir.resolve()):
            make_state_dir(results_dir)  # ignored by git: it may sit inside the results clone
        else:
            index_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._open()
        except OperationalError as exc:
            raise self._unusable(exc) from None
        except DatabaseError as exc:
            self._rebuild(exc)

    def _unusable(self, exc: OperationalError) -> ReportError:
        """Busy (another report holds the lock) or not openable: say so; never rebuild it then."""
        busy = "locked" in str(exc.orig) or "busy" in str(exc.orig)
        return ReportError(f"report index {self.index_path}: {exc.orig}; "
                         + ("another rtbench-report is updating it: wait for it, or " if busy else "")
                         + "pass --index PATH for another index file, or --no-index")

    def _rebuild(self, exc: DatabaseError) -> None:
        # Derived data: a damaged index (a crash mid-write, a stray file) is rebuilt, not fatal.
        log.warning("report index %s is unreadable (%s); rebuilding it", self.index_path, exc.orig)
        self.engine.dispose()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.index_path}{suffix}").unlink(missing_ok=True)
        self._open()

    def _open(self) -> None:
        self.engine = create_engine(f"sqlite:///{self.index_path}", connect_args={"timeout": LOCK_WAIT_S})
        # WAL, no fsync per commit: the index is a cache; losing its last commit costs a re-read.
        event.listen(self.engine, "connect", _sqlite_pragmas)
        event.listen(self.engine, "begin", _begin_immediate)
        Base.metadata.create_all(self.engine)
        with self.engine.begin() as db:
            db.exec_driver_sql(f"SELECT value FROM {STATE} LIMIT 1").all()
            # Tables of an older layout (an index written by an earlier rtbench) only take space.
            current = set(Base.metadata.tables)
            for (name,) in db.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").all():
                if re.fullmatch(r"\w+_v\d+", name) and name not in current:
                    db.exec_driver_sql(f'DROP TABLE "{name}"')

    def close(self) -> None:
        self.engine.dispose()

    def report(self, spec_ref: str, policies: list[str], *, whole_tree: bool, include_all_tasks: bool = False,
               spec_slice: SpecSlice = WHOLE_SPEC, rescan: bool = False) -> dict[str, Any]:
        """Bring the index up to date (the folders of ``policies``, or every folder when
        ``whole_tree``) and return the report: derived from the tally, or the last one when
        neither the tree nor the options changed."""
        options = {"whole_tree": whole_tree, "include_all_tasks": include_all_tasks, "spec_slice": spec_slice,
                   "rescan": rescan}
        try:
            return self._report(spec_ref, policies, **options)
        except OperationalError as exc:
            raise self._unusable(exc) from None
        except DatabaseError as exc:  # damage found past the first query: start afresh, once
            self._rebuild(exc)
            return self._report(spec_ref, policies, **options)

    def _report(self, spec_ref: str, policies: list[str], *, whole_tree: bool, include_all_tasks: bool,
                spec_slice: SpecSlice, rescan: bool) -> dict[str, Any]:
        with self.engine.begin() as db:  # one transaction: directories, entries, tally and report move together
            version = db.exec_driver_sql(f"SELECT value FROM {STATE} WHERE key = 'version'").scalar() or 0
            was_empty = db.exec_driver_sql(f"SELECT path FROM {DIRECTORIES} LIMIT 1").first() is None
            sha, digest = self._spec(db, spec_ref)
            changes, new_tally = self._refresh(db, policies, whole_tree, rescan, digest)
            moved = any(c.removed or c.added for c in changes) or new_tally is not None
            if moved:
                db.exec_driver_sql(f"INSERT OR REPLACE INTO {STATE} (key, value) VALUES ('version', ?)",
                                   (version + 1,))
            key = report_key(version + moved, sha(), policies, include_all_tasks, spec_slice,
                             notes_fingerprint(self.root, policies))
            if not moved:
                cached = db.exec_driver_sql(f"SELECT report FROM {REPORTS} WHERE key = ?", (key,)).scalar()
                if cached is not None:
                    report = orjson.loads(cached)
                    report["generated_at"] = datetime.now().isoformat(timespec="seconds")
                    return report
            tally = self._tally(db, digest(), version, moved, changes, new_tally, was_empty)
            report = build_report(tally, policies, results_dir=self.root, include_all_tasks=include_all_tasks,
                                  spec_slice=spec_slice)
            db.exec_driver_sql(f"DELETE FROM {REPORTS}")  # only the latest report is worth keeping
            db.exec_driver_sql(f"INSERT INTO {REPORTS} (key, report) VALUES (?, ?)", (key, orjson.dumps(report)))
            return report

    # -- the tree ---------------------------------------------------------------------------

    def _refresh(self, db: Connection, policies: list[str], whole_tree: bool, rescan: bool,
                 digest: Callable[[], SpecDigest]) -> tuple[list[Change], Tally | None]:
        """Update the rows of the scope's directories. Returns the changes of known directories,
        and the tally of directories new to the index (None when there are none)."""
        known = dict(db.exec_driver_sql(f"SELECT path, mtime_ns FROM {DIRECTORIES}").fetchall())
        scope = set(policies)
        prefix = self.root + os.sep  # POSIX paths: the stored "/" is os.sep
        changed, gone = [], set()
        for path, old_mtime in known.items():
            if not whole_tree and path.split("/", 1)[0] not in scope:
                continue
            try:
                mtime = os.stat(prefix + path).st_mtime_ns
            except (FileNotFoundError, NotADirectoryError):
                gone.add(path)
                continue
            if rescan or mtime != old_mtime:  # UNSETTLED (-1) never equals a real mtime
                changed.append(path)
        old_entries = self._entries(db, changed)
        rescans = rescan_directories(self.root, [(path, old_entries.get(path, [])) for path in changed])
        # A directory's subdirectories change only with its mtime: new ones are found in the
        # listings of changed directories; known ones that left them are gone, with their subtrees.
        new_roots = [p for p in policies if p not in known and os.path.isdir(prefix + p)]
        children: dict[str, set[str]] = defaultdict(set)
        for path in known if rescans else ():
            if "/" in path:
                children[path.rsplit("/", 1)[0]].add(path)
        for done in rescans:
            gone |= children[done.scan.path] - {f"{done.scan.path}/{name}" for name in done.scan.subdirs}
        if gone:
            gone |= {path for path in known if _ancestors(path) & gone}
        rescans = [done for done in rescans if done.scan.path not in gone]
        for done in rescans:
            new_roots.extend(child for name in done.scan.subdirs if (child := f"{done.scan.path}/{name}") not in known)
        new_scans, new_tally = scan_trees(self.root, new_roots, digest) if new_roots else ([], None)
        gone_paths = sorted(gone)
        gone_entries = self._entries(db, gone_paths)
        changes = [Change(done.scan.path, done.removed, done.added) for done in rescans]
        changes.extend(Change(path, entries, []) for path, entries in gone_entries.items() if entries)
        for start in range(0, len(gone_paths), 500):
            batch = gone_paths[start:start + 500]
            for table in (DIRECTORIES, ENTRIES):
                db.exec_driver_sql(f"DELETE FROM {table} WHERE path IN ({', '.join('?' * len(batch))})",
                                   tuple(batch))
        written = [done.scan for done in rescans] + new_scans
        if written:
            db.exec_driver_sql(f"INSERT OR REPLACE INTO {DIRECTORIES} (path, mtime_ns) VALUES (?, ?)",
                               [(s.path, s.mtime_ns) for s in written])
            db.exec_driver_sql(f"INSERT OR REPLACE INTO {ENTRIES} (path, entries) VALUES (?, ?)",
                               [(s.path, s.to_json()) for s in written])
        return changes, new_tally

    def _entries(self, db: Connection, paths: list[str]) -> dict[str, list[Entry]]:
        found = {}
        for start in range(0, len(paths), 500):
            batch = paths[start:start + 500]
            for path, entries in db.exec_driver_sql(
                    f"SELECT path, entries FROM {ENTRIES} WHERE path IN ({', '.join('?' * len(batch))})", tuple(batch)):
                found[path] = Entry.from_stored(entries)
        return found

    # -- the spec and the tally ---------------------------------------------------------------

    def _spec(self, db: Connection, spec_ref: str) -> tuple[Callable[[], str], Callable[[], SpecDigest]]:
        """Loaders of the spec's sha256 (known by path, size and mtime without reading the file)
        and of its digest (stored, or parsed once and stored)."""
        path = resolve_spec_path(spec_ref)
        info = path.stat()
        key = os.fspath(path.resolve())
        known_sha = db.exec_driver_sql(f"SELECT sha256 FROM {SPEC_FILES} WHERE path = ? AND size = ? AND mtime_ns = ?",
                                       (key, info.st_size, info.st_mtime_ns)).scalar()
        loaded: list[SpecDigest] = []

        def digest() -> SpecDigest:
            if loaded:
                return loaded[0]
            row = None if known_sha is None else db.exec_driver_sql(
                f"SELECT meta, caused_failure FROM {DIGESTS} WHERE sha256 = ?", (known_sha,)).first()
            if row is not None:
                loaded.append(SpecDigest.from_blobs(*row))
                return loaded[0]
            parsed = SpecDigest.load(spec_ref)
            db.exec_driver_sql(f"INSERT OR REPLACE INTO {SPEC_FILES} (path, size, mtime_ns, sha256) "
                               "VALUES (?, ?, ?, ?)", (key, info.st_size, info.st_mtime_ns, parsed.sha256))
            db.exec_driver_sql(f"INSERT OR REPLACE INTO {DIGESTS} (sha256, meta, caused_failure) VALUES (?, ?, ?)",
                               (parsed.sha256, *parsed.to_blobs()))
            loaded.append(parsed)
            return parsed

        def sha() -> str:
            return known_sha if known_sha is not None else digest().sha256

        return sha, digest

    def _tally(self, db: Connection, digest: SpecDigest, version: int, moved: bool, changes: list[Change],
               new_tally: Tally | None, was_empty: bool) -> Tally:
        """The tally at the new version: the stored one plus the changes, or rebuilt from every row."""
        stored = db.exec_driver_sql(f"SELECT version, meta, counts FROM {TALLIES} WHERE spec_sha256 = ?",
                                    (digest.sha256,)).first()
        if stored is not None and stored.version == version:
            tally = Tally.from_blobs(digest, stored.meta, stored.counts)
            tally.apply([(c.path, c.removed) for c in changes], -1)
            tally.apply([(c.path, c.added) for c in changes])
            if new_tally is not None:
                tally.merge(new_tally)
        elif stored is None and was_empty:
            tally = new_tally or Tally(digest)
        else:
            tally = Tally(digest)
            tally.apply([(path, orjson.loads(entries)) for path, entries in
                         db.exec_driver_sql(f"SELECT path, entries FROM {ENTRIES}")])
        new_version = version + moved
        db.exec_driver_sql(f"DELETE FROM {TALLIES}")  # tallies of other specs are stale once the tree moved
        meta, counts = tally.to_blobs()
        db.exec_driver_sql(f"INSERT INTO {TALLIES} (spec_sha256, version, meta, counts) VALUES (?, ?, ?, ?)",
                           (digest.sha256, new_version, meta, counts))
        return tally


def _ancestors(path: str) -> set[str]:
    parts = path.split("/")
    return {"/".join(parts[:i]) for i in range(1, len(parts))}


def _sqlite_pragmas(connection, _record) -> None:
    connection.isolation_level = None  # transactions begin in _begin_immediate, not in the driver
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


def _begin_immediate(connection: Connection) -> None:
    # Take the write lock first: a second report then waits (up to LOCK_WAIT_S) for the first
    # to finish, instead of failing when its snapshot turns stale at its first write.
    connection.exec_driver_sql("BEGIN IMMEDIATE")
