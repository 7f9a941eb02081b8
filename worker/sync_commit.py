"""The commit of a sync cycle: the records that differ from the index, as one pack.

``git add`` and ``git commit`` write a loose object per file and per folder, which on many
filesystems costs more than the rest of the cycle; ``git fast-import`` writes them as one pack.
The index is then told the committed blobs, so the work tree reads as clean, and what the user
staged by hand is left alone.
"""

from __future__ import annotations

import hashlib
import time

from worker.git_run import git, rev
from worker.sync_target import SyncTarget


def commit_records(target: SyncTarget, branch: str, paths: list[str]) -> tuple[int, list[str]]:
    """One commit of the records (and the changed extra paths) that differ from HEAD, written by
    ``git fast-import`` as one pack: ``git add`` and ``git commit`` would write a loose object
    per file and per folder, which on many filesystems costs more than everything else of the
    cycle. The index is then told the committed blobs, so the work tree reads as clean. What the
    user staged by hand is left alone. Returns the number of record files committed and their
    policies."""
    extras = [target.relative(p) for p in target.extra_paths if p.exists()]
    deleted: list[str] = []
    if extras:
        listed = git(target.repo, "ls-files", "-z", "--others", "--modified", "--exclude-standard", "--", *extras)
        paths = paths + [p for p in listed.stdout.decode().split("\0") if p]
        deleted = [p for p in git(target.repo, "ls-files", "-z", "--deleted", "--", *extras).stdout.decode()
                   .split("\0") if p]
    known = _indexed_blobs(target, paths)
    algorithm = target.object_format
    changed: dict[str, tuple[bytes, str]] = {}
    for path in dict.fromkeys(paths):
        try:
            data = (target.repo / path).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            continue
        blob = hashlib.new(algorithm, b"blob %d\0" % len(data) + data).hexdigest()  # git's blob id
        if known.get(path) != blob:
            changed[path] = (data, blob)
    if not changed and not deleted:
        return 0, []
    results = target.relative(target.results_dir)
    skip = len(results.split("/")) if results != "." else 0
    records = [p for p in changed if results == "." or p.startswith(f"{results}/")]
    policies = sorted({p.split("/")[skip] for p in records if len(p.split("/")) > skip + 1})
    message = f"results: {target.machine} +{len(records)} episodes ({', '.join(policies) or 'no records'})"
    parent = rev(target.repo, "HEAD")
    now = int(time.time())
    who = f"rtbench {target.machine} <rtbench@{target.machine}> {now} +0000"
    stream = [b"feature done\n", f"commit refs/heads/{branch}\nauthor {who}\ncommitter {who}\n".encode(),
              b"data %d\n" % len(message.encode()), message.encode(), b"\n"]
    if parent:
        stream.append(f"from {parent}\n".encode())
    for path, (data, _) in changed.items():
        stream += [f"M 100644 inline {_quoted(path)}\n".encode(), b"data %d\n" % len(data), data, b"\n"]
    stream += [f"D {_quoted(path)}\n".encode() for path in deleted]
    stream.append(b"done\n")
    git(target.repo, "fast-import", "--quiet", data=b"".join(stream))
    index = [f"100644 {blob}\t{path}" for path, (_, blob) in changed.items()]
    null = "0" * (64 if algorithm == "sha256" else 40)
    index += [f"0 {null}\t{path}" for path in deleted]
    git(target.repo, "update-index", "-z", "--index-info", data="\0".join(index).encode() + b"\0")
    return len(records), policies


def _indexed_blobs(target: SyncTarget, paths: list[str]) -> dict[str, str]:
    """The blob ids the index holds for these paths (what HEAD has, unless a cycle was cut short)."""
    found: dict[str, str] = {}
    for start in range(0, len(paths), 2000):
        listed = git(target.repo, "ls-files", "-z", "--stage", "--", *paths[start:start + 2000]).stdout.decode()
        for entry in filter(None, listed.split("\0")):
            info, path = entry.split("\t", 1)
            found[path] = info.split()[1]
    return found


def _quoted(path: str) -> str:
    """A path as fast-import reads it (C-style quotes when it has a quote, backslash or newline)."""
    if any(c in path for c in '"\\\n') or path.startswith('"'):
        return '"' + path.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return path


