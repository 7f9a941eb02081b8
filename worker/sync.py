"""One results-sync cycle for the git clone that holds the results folder.

    stage -> commit -> fetch + rebase (conflicts settled by the record rule) -> push

- **Stage** exactly the records written since the last cycle: the journal that
  ``benchmark.results.write_record`` appends to (``benchmark.sync_journal``), plus the extra
  paths (``RTBENCH_SYNC_PATHS``, e.g. ``reports/``); ``scan=True`` also finds record files the
  journal missed. Never a whole-tree ``git add -A``.
- **Commit** once: ``results: <machine> +N episodes (<policies>)``, authored by the machine.
  The journal's parts are deleted only when the cycle finished; after a failure the next cycle
  reads them again (their records, committed already, add nothing new) and pushes the commit.
- **Rebase** on the remote branch. The same episode written on two machines is settled by
  ``benchmark.results.preferred_record``, identically everywhere; the losing file is kept under
  ``.rtbench/conflicts/``.
- **Push**, never forced. A rejected push fetches, rebases and tries again with jittered
  backoff, a bounded number of times; no push slot in the fleet's budget leaves the commit
  for the next cycle.

Any failure leaves the clone clean (no rebase in progress) and raises ``SyncError`` with one
line that names what to do; credentials never appear in it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from benchmark.results import is_record_file_name, preferred_record
from benchmark.sync_journal import JOURNAL_NAME, journal_path, make_state_dir, read_part
from worker.git_run import SyncBusy, SyncError, git, last_line, redact, rev
from worker.sync_commit import commit_records
from worker.sync_target import SyncTarget

log = logging.getLogger(__name__)

PUSH_ATTEMPTS = 5
BACKOFF_S = 1.0  # the first retry after a rejected push waits up to this, doubling
PENDING = f"{JOURNAL_NAME}.pending"
# What a push says when another machine pushed first (or at the same moment): fetch and retry.
_PUSH_RACES = ("[rejected]", "non-fast-forward", "fetch first", "cannot lock ref", "failed to update ref",
               "incorrect old value")
_TOKEN_USERS = ("x-access-token", "oauth2", "oauth", "gitlab-ci-token")
_TOKEN_PREFIXES = ("ghp_", "gho_", "ghs_", "ghu_", "github_pat_", "glpat-")


@dataclass
class CycleResult:
    machine: str
    committed: int = 0  # record files in this cycle's commit
    policies: list[str] = field(default_factory=list)
    head: str | None = None  # the commit the remote branch points at after the push
    pushed: bool = False
    deferred: str | None = None  # why the push waits for a later cycle
    pulled: list[str] = field(default_factory=list)  # record paths (repo-relative) other machines added
    conflicts: list[str] = field(default_factory=list)  # where the losing files were kept
    push_attempts: int = 0

    def line(self) -> str:
        """The cycle's one log line."""
        parts = [f"sync {self.machine}: committed {self.committed} record(s)"
                 + (f" ({', '.join(self.policies)})" if self.policies else "")]
        if self.pushed:
            parts.append(f"pushed {self.head[:12] if self.head else '?'}"
                         + (f" after {self.push_attempts} attempts" if self.push_attempts > 1 else ""))
        elif self.deferred:
            parts.append(f"push deferred ({self.deferred})")
        else:
            parts.append("nothing to push")
        parts.append(f"pulled {len(self.pulled)} record(s)")
        if self.conflicts:
            parts.append(f"{len(self.conflicts)} conflict(s), losers kept: {', '.join(self.conflicts)}")
        return "; ".join(parts)


def check_remote_url(url: str, remote: str) -> None:
    """Refuse a remote URL that carries a credential: it would end up in logs and process lists."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.username is None:
        return
    user = parts.username
    if parts.password is not None or user in _TOKEN_USERS or user.startswith(_TOKEN_PREFIXES) or len(user) >= 20:
        raise SyncError(f"remote {remote!r} URL {redact(url)} carries a credential: remove it (git remote set-url "
                        f"{remote} {parts.scheme}://{parts.hostname}{parts.path}) and use an ssh deploy key "
                        "(GIT_SSH_COMMAND) or a git credential helper")


@contextmanager
def cycle_lock(target: SyncTarget, wait_s: float) -> Iterator[None]:
    """One cycle per clone at a time (held until the cycle ends; the kernel frees it if we die)."""
    path = make_state_dir(target.results_dir) / "sync.lock"
    with open(path, "a") as handle:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise SyncBusy(f"another sync cycle is running in {target.repo}") from None
                time.sleep(0.2)
        yield


def prepare_clone(target: SyncTarget) -> None:
    """Settle what a killed cycle left, and configure the clone for many small files (once)."""
    if _rebase_in_progress(target):
        log.warning("sync %s: a rebase was left in progress (a cycle was killed); aborting it", target.machine)
        git(target.repo, "rebase", "--abort", check=False)
    index_lock = target.git_dir / "index.lock"
    if index_lock.exists() and time.time() - index_lock.stat().st_mtime > 60:
        # We hold the clone's sync lock and only the sync process runs git here: a lock this old
        # was left by a killed git.
        log.warning("sync %s: removing a stale %s", target.machine, index_lock)
        index_lock.unlink(missing_ok=True)
    if git(target.repo, "config", "--get", "rtbench.configured", check=False).returncode != 0:
        # Index v4 (prefix-compressed paths), the untracked cache, a split index (an index write
        # costs what changed, not the 100,000 entries) and commit graphs.
        for key, value in (("feature.manyFiles", "true"), ("index.version", "4"), ("core.untrackedCache", "true"),
                           ("core.splitIndex", "true"), ("fetch.writeCommitGraph", "true"),
                           ("gc.writeCommitGraph", "true"), ("rtbench.configured", "1")):
            git(target.repo, "config", key, value)
        git(target.repo, "update-index", "--index-version", "4")


def take_journal(target: SyncTarget) -> list[Path]:
    """Move the live journal aside (writers start a new one) and return every part not yet committed."""
    live = journal_path(target.results_dir)
    with suppress(FileNotFoundError):
        os.rename(live, live.with_name(f"{PENDING}.{time.time_ns()}.{os.getpid()}"))
    return sorted(target.state.glob(f"{PENDING}.*"))


def journal_records(target: SyncTarget, parts: list[Path]) -> list[str]:
    """Repo-relative paths of the journal's records that exist (a deleted one has nothing to stage)."""
    seen: dict[str, None] = {}
    for part in parts:
        for line in read_part(part):
            if line and not line.startswith("/") and ".." not in line.split("/"):
                seen[line] = None
    prefix = target.relative(target.results_dir)
    return [f"{prefix}/{line}" if prefix != "." else line for line in seen
            if (target.results_dir / line).is_file()]


def scanned_records(target: SyncTarget) -> list[str]:
    """Record files git does not have, or has in another version (the journal missed them)."""
    listed = git(target.repo, "ls-files", "-z", "--others", "--modified", "--exclude-standard", "--",
                  target.relative(target.results_dir)).stdout.decode().split("\0")
    return [path for path in listed if path and is_record_file_name(path.rsplit("/", 1)[-1])]


def run_cycle(target: SyncTarget, *, scan: bool = False, push_allowed: Callable[[], bool] = lambda: True,
              wait_s: float = 0.0) -> CycleResult:
    """One cycle; raises ``SyncBusy`` when another holds the clone, ``SyncError`` when it cannot finish."""
    result = CycleResult(target.machine)
    with cycle_lock(target, wait_s):
        prepare_clone(target)
        branch = git(target.repo, "symbolic-ref", "--quiet", "--short", "HEAD", check=False).stdout.decode().strip()
        if not branch:
            raise SyncError(f"{target.repo} is not on a branch (detached HEAD); check out the results branch")
        url = git(target.repo, "remote", "get-url", target.remote, check=False)
        if url.returncode != 0:
            raise SyncError(f"{target.repo} has no remote {target.remote!r}; add it (git remote add ...)")
        check_remote_url(url.stdout.decode().strip(), target.remote)
        parts = take_journal(target)
        paths = journal_records(target, parts)
        if scan:
            paths = list(dict.fromkeys(paths + scanned_records(target)))
        result.committed, result.policies = commit_records(target, branch, paths)
        tracking = f"refs/remotes/{target.remote}/{branch}"
        before = rev(target.repo, tracking)
        try:
            fetched = _exchange(target, branch, tracking, result, push_allowed)
        finally:
            _abort_rebase(target)
        # Finished: the journal's records are pushed (or wait in a commit for the push budget).
        # A cycle that failed kept its parts; the next one finds their records committed already.
        for part in parts:
            part.unlink(missing_ok=True)
        if fetched and fetched != before:  # what the remote had gained before our push: others' work
            result.pulled = _changed(target, before, fetched)
    return result


def _exchange(target: SyncTarget, branch: str, tracking: str, result: CycleResult,
              push_allowed: Callable[[], bool]) -> str | None:
    """Fetch, rebase and push until the remote holds our commits, a bounded number of times.
    Returns the remote head last fetched (what our commits now sit on)."""
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        remote_head = _fetch(target, branch, tracking)
        if remote_head is not None and not _is_ancestor(target, remote_head, "HEAD"):
            _rebase(target, tracking, result)  # (a rebase with nothing to move still reads the whole tree)
        head = rev(target.repo, "HEAD")
        if head == remote_head:
            result.head = head
            return remote_head
        if not push_allowed():
            result.deferred = "the fleet's push budget for this minute is spent"
            return remote_head
        result.push_attempts = attempt
        # No delta search: records are small and the search costs more than it saves.
        pushed = git(target.repo, "-c", "pack.window=0", "push", "--porcelain", target.remote,
                      f"HEAD:refs/heads/{branch}", check=False)
        if pushed.returncode == 0:
            git(target.repo, "update-ref", tracking, "HEAD")
            result.pushed, result.head = True, head
            return remote_head
        text = redact(pushed.stderr.decode(errors="replace") + pushed.stdout.decode(errors="replace"))
        if not any(race in text for race in _PUSH_RACES):
            why = next((line.strip() for line in text.splitlines() if "rejected" in line), last_line(text))
            raise SyncError(f"push to {target.remote} refused: {why}; if the branch is protected, allow this "
                            "machine's deploy key to push to it (never force)")
        delay = random.uniform(0.5, 1.0) * BACKOFF_S * 2 ** (attempt - 1)
        log.info("sync %s: push rejected (another machine pushed first); again in %.1f s", target.machine, delay)
        time.sleep(delay)
    raise SyncError(f"push to {target.remote} still rejected after {PUSH_ATTEMPTS} attempts (busy remote); "
                    "the commit stays local and the next cycle pushes it")


def _fetch(target: SyncTarget, branch: str, tracking: str) -> str | None:
    """The remote branch's head (None while a fresh remote has no such branch). An unreachable
    remote raises: the records stay committed here for the next cycle."""
    fetched = git(target.repo, "fetch", "--quiet", "--no-tags", target.remote, f"+refs/heads/{branch}:{tracking}",
                   check=False)
    if fetched.returncode == 0:
        return rev(target.repo, tracking)
    text = redact(fetched.stderr.decode(errors="replace"))
    if "couldn't find remote ref" in text:
        return None
    raise SyncError(f"cannot reach remote {target.remote!r}: {last_line(text)}; the records stay committed here "
                    "and the next cycle pushes them")


def _identity(target: SyncTarget) -> tuple[str, ...]:
    """The machine as committer of rebased commits (a fresh machine may have no git identity)."""
    return ("-c", f"user.name=rtbench {target.machine}", "-c", f"user.email=rtbench@{target.machine}")


def _is_ancestor(target: SyncTarget, ancestor: str, descendant: str) -> bool:
    return git(target.repo, "merge-base", "--is-ancestor", ancestor, descendant, check=False).returncode == 0


def _rebase(target: SyncTarget, onto: str, result: CycleResult) -> None:
    """Rebase our commits on the remote's, settling each conflicting record by the rule."""
    rebased = git(target.repo, *_identity(target), "rebase", "--quiet", "--autostash", onto, check=False)
    for _ in range(1000):  # one round per conflicting commit of ours
        if rebased.returncode == 0 and not _rebase_in_progress(target):
            return
        conflicted = [p for p in git(target.repo, "diff", "--name-only", "--diff-filter=U", "-z")
                      .stdout.decode().split("\0") if p]
        if not conflicted:
            if _rebase_in_progress(target):  # this commit became empty: what it added is upstream
                rebased = git(target.repo, *_identity(target), "rebase", "--skip", check=False)
                continue
            raise SyncError(f"rebase on {onto} failed: {last_line(redact(rebased.stderr.decode(errors='replace')))}")
        for path in conflicted:
            result.conflicts.append(_settle(target, path))
        git(target.repo, "add", "--", *conflicted)
        rebased = git(target.repo, *_identity(target), "rebase", "--continue", check=False)
        if rebased.returncode != 0 and "nothing to commit" in rebased.stdout.decode() + rebased.stderr.decode():
            rebased = git(target.repo, *_identity(target), "rebase", "--skip", check=False)
    raise SyncError("rebase did not finish after 1000 rounds")


def _settle(target: SyncTarget, path: str) -> str:
    """Write the preferred version of a conflicting file; keep the other under .rtbench/conflicts/.
    In a rebase, stage 2 is the remote's version and stage 3 ours."""
    theirs, ours = _stage(target, path, 2), _stage(target, path, 3)
    if theirs is not None and ours is not None and is_record_file_name(path.rsplit("/", 1)[-1]):
        keep_ours = preferred_record(ours, theirs)
    else:  # a file only one side still has, or another file (a report): the remote's stands
        keep_ours = theirs is None
    winner, loser = (ours, theirs) if keep_ours else (theirs, ours)
    full = target.repo / path
    if loser is None:
        description = f"{path} (kept; the other side deleted it)"
    else:
        kept = target.state / "conflicts" / f"{path}.{_machine_of(loser)}.{time.time_ns()}"
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_bytes(loser)
        description = kept.relative_to(target.state).as_posix()
    if winner is None:
        full.unlink(missing_ok=True)
    else:
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_bytes(winner)
    return description


def _machine_of(raw: bytes) -> str:
    try:
        return str(json.loads(raw)["worker"]["machine"])
    except (ValueError, KeyError, TypeError):
        return "unknown"


def _stage(target: SyncTarget, path: str, stage: int) -> bytes | None:
    shown = git(target.repo, "show", f":{stage}:{path}", check=False)
    return shown.stdout if shown.returncode == 0 else None


def _rebase_in_progress(target: SyncTarget) -> bool:
    return (target.git_dir / "rebase-merge").exists() or (target.git_dir / "rebase-apply").exists()


def _abort_rebase(target: SyncTarget) -> None:
    if _rebase_in_progress(target):
        git(target.repo, "rebase", "--abort", check=False)


def _changed(target: SyncTarget, old: str | None, new: str) -> list[str]:
    """Record files added or modified between two commits (every record of ``new`` if ``old`` is None)."""
    results = target.relative(target.results_dir)
    if old is None:
        listed = git(target.repo, "ls-tree", "-r", "-z", "--name-only", new, results).stdout
    else:
        listed = git(target.repo, "diff", "--name-only", "-z", "--no-renames", "--diff-filter=AM", old, new, "--",
                      results).stdout
    return [p for p in listed.decode().split("\0") if p and is_record_file_name(p.rsplit("/", 1)[-1])]
