"""Counts of records per episode slot of one spec, per policy folder: every number of a report
is derived from them, and they are kept up to date by adding and removing index entries, so
a report after 1% more files costs 1% of the reading.

A record counts towards its folder's policy. Before it reaches a slot it is checked, in this
order: a record naming another policy than its folder is ``misplaced``; unknown
settings or tasks and repeats beyond the spec are ``out_of_spec``; a logged config that is
not the spec's is ``config_mismatch``. Exclusions are kept per repeat index (-1 when the record
has none) and error labels per episode slot, so that ``--max-repeat`` (and, for errors,
``--settings`` and ``--tasks``) can filter them afterwards.
Records named by path, for the report to list: ``misplaced`` ones, and in-spec records whose
file is not at their episode's own path (``episode_<r>.json`` in ``<policy>/<setting>/<task>``),
with their outcome, so that the report can keep one record per episode (duplicates).
Removing an entry undoes exactly what adding it did.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import orjson

from benchmark.records.results import OK
from benchmark.records.time_use import add_sums
from reporting.spec_digest import HASH_CHARS, SpecDigest

COMPLETED, VALID, SUCCESSES = range(3)
MISPLACED, OUT_OF_SPEC, CONFIG_MISMATCH = "misplaced", "out_of_spec", "config_mismatch"
NO_REPEAT = -1


class FolderTally:
    """The counts of one policy folder."""

    def __init__(self, slots: int, counts: np.ndarray | None = None) -> None:
        self.counts = counts if counts is not None else np.zeros((3, slots), dtype=np.int32)
        self.error_labels: Counter[tuple[str, int]] = Counter()  # (label, slot) -> records
        self.excluded: Counter[tuple[str, int]] = Counter()
        self.problems: dict[str, tuple[str, str | None]] = {}  # path relative to the results dir -> why
        self.misplaced: dict[str, str] = {}  # path -> the policy its record names
        self.off_path: dict[str, list[int]] = {}  # path -> [slot, valid, success]: not its episode's own path
        self.time_use: dict[str, list[float]] = {}  # machine -> time_use.SUMS of its in-spec records


class Tally:
    def __init__(self, digest: SpecDigest) -> None:
        self.digest = digest
        self.slots = len(digest.settings) * len(digest.tasks) * digest.repeats
        self.folders: dict[str, FolderTally] = {}
        self._setting_index = {s.id: i for i, s in enumerate(digest.settings)}
        self._task_index = {t: i for i, t in enumerate(digest.tasks)}

    def folder(self, name: str) -> FolderTally:
        if name not in self.folders:
            self.folders[name] = FolderTally(self.slots)
        return self.folders[name]

    def apply(self, directories: Iterable[tuple[str, Sequence[Sequence]]], sign: int = 1) -> None:
        """Add (sign 1) or remove (sign -1) the entries of directories, each given by its path
        relative to the results dir (its first part is the policy folder). An entry is a
        ``reporting.entries.Entry`` or its stored form, an array of the same fields in order."""
        slots: dict[str, tuple[list[int], list[int], list[int]]] = {}
        for directory, entries in directories:
            folder_name = directory.split("/", 1)[0]
            if folder_name not in slots:
                slots[folder_name] = ([], [], [])
            self._apply_directory(directory, folder_name, entries, sign, *slots[folder_name])
        for folder_name, lists in slots.items():
            counts = self.folder(folder_name).counts
            for row, found in zip((COMPLETED, VALID, SUCCESSES), lists, strict=True):
                if found:
                    counts[row] += sign * np.bincount(found, minlength=self.slots).astype(np.int32)

    def _apply_directory(self, directory: str, folder_name: str, entries: Sequence[Sequence], sign: int,
                         completed: list[int], valid: list[int], successes: list[int]) -> None:
        folder = self.folder(folder_name)
        settings, tasks, repeats = self._setting_index, self._task_index, self.digest.repeats
        n_tasks, hashes = len(tasks), self.digest.config_hashes
        labels, excluded = folder.error_labels, folder.excluded
        # Unpacked in Entry's field order: as fast as indexing, and works on stored arrays too
        # (building an Entry per stored array measured +88 ms per 100,000 entries).
        for (name, _size, _mtime_ns, status, problem, policy, setting_id, task, repeat, success, error_type,
             logged, machine, time_sums) in entries:
            if status != OK:
                path = f"{directory}/{name}"
                if sign > 0:
                    folder.problems[path] = (status, problem)
                else:
                    folder.problems.pop(path, None)
                continue
            if policy != folder_name:
                excluded[(MISPLACED, NO_REPEAT if repeat is None else repeat)] += sign
                _note(folder.misplaced, f"{directory}/{name}", str(policy), sign)
                continue
            s, t = settings.get(setting_id), tasks.get(task)
            if s is None or t is None or repeat is None or repeat >= repeats:
                excluded[(OUT_OF_SPEC, NO_REPEAT if repeat is None else repeat)] += sign
                continue
            slot = (s * n_tasks + t) * repeats + repeat
            if logged is not None and logged != hashes[slot * HASH_CHARS:(slot + 1) * HASH_CHARS]:
                excluded[(CONFIG_MISMATCH, repeat)] += sign
                continue
            completed.append(slot)
            if name != f"episode_{repeat}.json" or directory != f"{folder_name}/{setting_id}/{task}":
                outcome = [slot, int(error_type is None), int(error_type is None and bool(success))]
                _note(folder.off_path, f"{directory}/{name}", outcome, sign)
            if time_sums is not None:
                add_sums(folder.time_use.setdefault(machine, [0.0] * len(time_sums)), time_sums, sign)
            if error_type is None:
                valid.append(slot)
                if success:
                    successes.append(slot)
            else:
                labels[(error_type, slot)] += sign

    def merge(self, other: Tally) -> None:
        """Add another tally of the same spec (of other directories)."""
        for name, theirs in other.folders.items():
            mine = self.folder(name)
            mine.counts += theirs.counts
            mine.error_labels.update(theirs.error_labels)
            mine.excluded.update(theirs.excluded)
            mine.problems.update(theirs.problems)
            mine.misplaced.update(theirs.misplaced)
            mine.off_path.update(theirs.off_path)
            for machine, sums in theirs.time_use.items():
                add_sums(mine.time_use.setdefault(machine, [0.0] * len(sums)), sums, 1)

    def to_blobs(self) -> tuple[bytes, bytes]:
        names = sorted(self.folders)
        counts = (np.stack([self.folders[n].counts for n in names]) if names
                  else np.zeros((0, 3, self.slots), dtype=np.int32))
        meta = {n: {"error_labels": [[k[0], k[1], v] for k, v in self.folders[n].error_labels.items() if v],
                    "excluded": [[k[0], k[1], v] for k, v in self.folders[n].excluded.items() if v],
                    "problems": self.folders[n].problems, "time_use": self.folders[n].time_use,
                    "misplaced": self.folders[n].misplaced, "off_path": self.folders[n].off_path} for n in names}
        return orjson.dumps({"folders": names, "meta": meta}), counts.tobytes()

    @classmethod
    def from_blobs(cls, digest: SpecDigest, meta_blob: bytes, counts_blob: bytes) -> Tally:
        tally = cls(digest)
        stored = orjson.loads(meta_blob)
        counts = np.frombuffer(counts_blob, dtype=np.int32).reshape(len(stored["folders"]), 3, tally.slots)
        for i, name in enumerate(stored["folders"]):
            folder = FolderTally(tally.slots, counts[i].copy())
            meta = stored["meta"][name]
            folder.error_labels.update({(label, r): n for label, r, n in meta["error_labels"]})
            folder.excluded.update({(reason, r): n for reason, r, n in meta["excluded"]})
            folder.problems = {path: (status, problem) for path, (status, problem) in meta["problems"].items()}
            folder.time_use = meta["time_use"]
            folder.misplaced, folder.off_path = meta["misplaced"], meta["off_path"]
            tally.folders[name] = folder
        return tally



def _note(named: dict, path: str, value: object, sign: int) -> None:
    if sign > 0:
        named[path] = value
    else:
        named.pop(path, None)
