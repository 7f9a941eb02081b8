"""One results-sync cycle for the git clone that holds the results folder.

    known state -> fetch -> pull (settled by the rule) -> commit -> push -> move the branch

- **Known state** first (``sync_clone``): enough free space, no stale git lock (removed only when
  no git runs in the clone), leftovers of a killed cycle removed, an interrupted branch move
  finished (``sync_tree``), nobody's rebase or merge in progress, HEAD on a branch, and after
  the fetch nothing in the clone that the sync did not make. Otherwise one line says what to do.
- **Pull**: the branch moves to the remote's head, the work tree following file by file; a
  record written here since meets the remote's version under ``preferred_record``, the loser
  kept under ``.rtbench/conflicts/``. No rebase, no checkout, no reset, ever.
- **Commit** the journal's records (``benchmark.records.journal``) and the changed extra paths
  (``RTBENCH_SYNC_PATHS``, e.g. ``reports/``) that differ from the branch, as one commit on it
  at a private ref (``sync_commit``); ``scan=True`` also finds records the journal missed.
  Files that are not valid JSON or hold conflict markers are reported, never committed.
- **Push**, never forced. Only then does the branch move to the commit. A push that another
  machine beat pulls and tries again with jittered backoff, a bounded number of times, without
  taking another slot of the fleet's push budget; no slot leaves the records for the next cycle.
- **Journal**: a line is dropped only when the remote holds its record, by path and blob id.

A kill -9 at any moment leaves the branch at a commit that holds everything it held before, and
every record in the work tree and the journal. Failures raise ``SyncError`` with one line that
names what to do (``DiskFull`` for a full disk); credentials never appear in it.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from benchmark.common.atomic import write_bytes_atomic
from benchmark.records.journal import JOURNAL_NAME, SCAN_NEEDED, journal_path, make_state_dir, read_part, state_dir
from worker.git_run import DiskFull, SyncBusy, SyncError, git, last_line, redact, rev
from worker.sync_clone import RUNNING, check_ownership, check_space, check_state, settle_leftovers
from worker.sync_commit import Changes, build_commit, changes_against, extra_changes
from worker.sync_target import SyncTarget
from worker.sync_tree import advance, finish_interrupted, stage_committed, tree_blobs

log = logging.getLogger(__name__)

PUSH_ATTEMPTS = 5
BACKOFF_S = 1.0  # the first retry after a rejected push waits up to this, doubling
PENDING = f"{JOURNAL_NAME}.pending"
LAST_SCAN = "sync-last-scan"  # touched by each cycle that scanned the results folder
SCAN_EVERY_S = 3600.0  # a record whose journal line was lost (its writer killed) waits at most this
# What a push says when another machine pushed first (or at the same moment): fetch and retry.
_PUSH_RACES = ("[rejected]", "non-fast-forward", "fetch first", "cannot lock ref", "failed to update ref",
               "incorrect old value")
# A push URL that cannot be reached (not a refusal of the push itself).
_UNREACHABLE = ("Could not resolve host", "unable to access", "Connection refused", "Could not read from remote",
                "does not appear to be a git repository", "timed out", "Network is unreachable",
                "No route to host", "unable to connect", "Connection reset", "Host key verification failed",
                "Permission denied (publickey")
_PROTECTED = ("protected", "[remote rejected]", "hook declined", "denied", "not allowed")
_TOKEN_USERS = ("x-access-token", "oauth2", "oauth", "gitlab-ci-token")
_TOKEN_PREFIXES = ("ghp_", "gho_", "ghs_", "ghu_", "github_pat_", "glpat-")
_SECRET_PARAMS = ("token", "key", "secret", "password", "passwd", "auth", "sig", "credential")


@dataclass
class CycleResult:
    machine: str
    committed: int = 0  # record files in this cycle's pushed commit
    policies: list[str] = field(default_factory=list)
    head: str | None = None  # the commit the remote branch points at, as far as this cycle saw
    pushed: bool = False
    deferred: str | None = None  # why the push waits for a later cycle
    pulled: list[str] = field(default_factory=list)  # record paths (repo-relative) other machines added
    pushed_records: list[str] = field(default_factory=list)  # record paths (repo-relative) this cycle pushed
    conflicts: list[str] = field(default_factory=list)  # where the losing files were kept
    rejected: list[str] = field(default_factory=list)  # "path (why)": files never committed
    waiting: int = 0  # journal lines whose record the remote does not hold yet
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
        if self.waiting:
            parts.append(f"{self.waiting} waiting")
        if self.conflicts:
            parts.append(f"{len(self.conflicts)} conflict(s), losers kept: {', '.join(self.conflicts[:3])}"
                         + (" ..." if len(self.conflicts) > 3 else ""))
        if self.rejected:
            parts.append(f"{len(self.rejected)} file(s) not committed: {', '.join(self.rejected[:3])}"
                         + (" ..." if len(self.rejected) > 3 else ""))
        return "; ".join(parts)


def check_remote_url(url: str, remote: str) -> None:
    """Refuse a remote URL that carries a credential (in its user-info or its query string): it
    would end up in logs and process lists."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return
    user = parts.username or ""
    secret_query = any(any(word in name.lower() for word in _SECRET_PARAMS)
                       for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    if (secret_query or parts.password is not None or user in _TOKEN_USERS or user.startswith(_TOKEN_PREFIXES)
            or len(user) >= 20):
        raise SyncError(f"remote {remote!r} URL {redact(url)} carries a credential: remove it (git remote set-url "
                        f"[--push] {remote} {parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}) and use "
                        "an ssh deploy "
                        "key (GIT_SSH_COMMAND) or a git credential helper")


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


def read_config(target: SyncTarget) -> dict[str, list[str]]:
    """The settings a cycle reads (the remote's URLs, whether the clone is configured), in one
    call; every value of a key (git pushes to every ``pushurl``)."""
    pattern = rf"^(rtbench\.configured|remote\.{re.escape(target.remote)}\.(url|pushurl))$"
    listed = git(target.repo, "config", "-z", "--get-regexp", pattern, check=False).stdout.decode(errors="replace")
    found: dict[str, list[str]] = {}
    for entry in listed.split("\0"):
        if "\n" in entry:
            key, value = entry.split("\n", 1)
            found.setdefault(key, []).append(value)
    return found


def configure_clone(target: SyncTarget, config: dict[str, list[str]]) -> None:
    """Configure the clone for many small files (once)."""
    if "rtbench.configured" not in config:
        # Index v4 (prefix-compressed paths), the untracked cache, a split index (an index write
        # costs what changed, not the 100,000 entries) and commit graphs.
        for key, value in (("feature.manyFiles", "true"), ("index.version", "4"), ("core.untrackedCache", "true"),
                           ("core.splitIndex", "true"), ("fetch.writeCommitGraph", "true"),
                           ("gc.writeCommitGraph", "true"), ("rtbench.configured", "1")):
            git(target.repo, "config", key, value)
        git(target.repo, "update-index", "--index-version", "4")


def check_remote_urls(target: SyncTarget, config: dict[str, list[str]]) -> None:
    """The remote exists, and none of its URLs and push URLs carries a credential."""
    urls = config.get(f"remote.{target.remote}.url")
    if not urls:
        raise SyncError(f"{target.repo} has no remote {target.remote!r}; add it (git remote add ...)")
    for url in urls + config.get(f"remote.{target.remote}.pushurl", []):
        check_remote_url(url, target.remote)


def take_journal(target: SyncTarget) -> list[Path]:
    """Move the live journal aside (writers start a new one) and return every part not yet pushed."""
    live = journal_path(target.results_dir)
    with suppress(FileNotFoundError):
        os.rename(live, live.with_name(f"{PENDING}.{time.time_ns()}.{os.getpid()}"))
    return sorted(target.state.glob(f"{PENDING}.*"))


def journal_lines(parts: list[Path]) -> list[str]:
    """The paths (relative to the results folder) the parts name, once each, safe ones only."""
    seen: dict[str, None] = {}
    for part in parts:
        for line in read_part(part):
            if line and not line.startswith("/") and ".." not in line.split("/"):
                seen[line] = None
    return list(seen)


def waiting_records(results_dir: Path) -> int:
    """Records written and not yet known to be on the remote: the journal and its parts."""
    state = state_dir(results_dir)
    count = 0
    for part in [journal_path(results_dir), *state.glob(f"{PENDING}.*")]:
        with suppress(FileNotFoundError), open(part, "rb") as handle:
            count += sum(1 for line in handle if line.strip())
    return count


def _scan_due(target: SyncTarget) -> bool:
    """Scan for records the journal missed: after a failed journal append or a full disk, in a
    clone never scanned (a service's first cycle) and every ``SCAN_EVERY_S``."""
    if (target.state / SCAN_NEEDED).exists():
        return True
    try:
        return time.time() - (target.state / LAST_SCAN).stat().st_mtime > SCAN_EVERY_S
    except FileNotFoundError:
        return True


def scanned_records(target: SyncTarget) -> list[str]:
    """Record files git does not have, or has in another version (the journal missed them)."""
    listed = git(target.repo, "ls-files", "-z", "--others", "--modified", "--exclude-standard", "--",
                  target.results_top).stdout.decode(errors="surrogateescape").split("\0")
    return [path for path in listed if path and target.is_record(path)]


def run_cycle(target: SyncTarget, *, scan: bool = False, push_allowed: Callable[[], bool] = lambda: True,
              wait_s: float = 0.0) -> CycleResult:
    """One cycle; raises ``SyncBusy`` when another holds the clone, ``SyncError`` when it cannot finish
    (``DiskFull`` for a full disk). Whatever stops it, the branch is where it was or further, and
    every record is in the work tree and in the journal until the remote holds it."""
    try:
        return _cycle(target, scan, push_allowed, wait_s)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        full = DiskFull(f"the disk of {target.repo} is full ({exc.filename or 'a write'}: {exc.strerror}); free "
                        "space: nothing is lost, the next cycle goes on")
    except DiskFull as exc:
        full = exc
    with suppress(OSError):  # writers' journal lines may have failed too: the next cycle scans
        (target.state / SCAN_NEEDED).touch()
    raise full


def _cycle(target: SyncTarget, scan: bool, push_allowed: Callable[[], bool], wait_s: float) -> CycleResult:
    result = CycleResult(target.machine)
    with cycle_lock(target, wait_s):
        settle_leftovers(target, wait_s)  # first: what a starved git left may fill the disk
        check_space(target)
        running = target.state / RUNNING
        running.touch()  # removed when the cycle finishes: its presence says the last one did not
        branch = check_state(target)
        finish_interrupted(target, branch)
        config = read_config(target)
        configure_clone(target, config)
        check_remote_urls(target, config)
        parts = take_journal(target)
        lines = journal_lines(parts)
        tracking = f"refs/remotes/{target.remote}/{branch}"
        with ThreadPoolExecutor(1) as pool:  # the fetch runs while the files are read and compared
            fetching = pool.submit(_fetch, target, branch, tracking)
            head = rev(target.repo, "HEAD")
            scan = scan or _scan_due(target)
            if scan:  # found records wait in the journal like written ones until the remote holds them
                found = [os.path.relpath(p, target.results_top) for p in scanned_records(target)]
                lines = list(dict.fromkeys(lines + found))
            paths = target.clone_paths(lines)
            extras, deleted = extra_changes(target)
            changes: Changes | None = changes_against(target, head, paths + extras, deleted)  # (only reads)
            remote_head = fetching.result()
        check_ownership(target, branch, head, remote_head)
        if _pull(target, branch, head, remote_head, result) != head:
            head, changes = remote_head, None  # compared again, with the pulled files
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            if changes is None:
                changes = changes_against(target, head, paths + extras, deleted)
            on_remote = changes.base if head == remote_head else None  # the blobs the remote holds
            result.rejected = changes.rejected
            if not changes.files and not changes.deleted:
                break
            records = changes.records(target)
            if attempt == 1 and not push_allowed():  # races lost later do not take another slot
                result.deferred = "the fleet's push budget for this minute is spent"
                break
            commit = build_commit(target, head, changes)
            result.push_attempts = attempt
            with ThreadPoolExecutor(1) as pool:  # the index learns the commit's files during the push
                staging = pool.submit(stage_committed, target, changes.committed())
                pushed, refused = _push(target, branch, commit)
                staging.result()
            if pushed:
                advance(target, branch, head, commit, own=True, tracking=tracking)
                result.pushed, result.head = True, commit
                result.committed, result.policies = len(records), target.policies(records)
                result.pushed_records = records
                on_remote = {path: blob for path, blob in {**changes.base, **changes.committed()}.items() if blob}
                head = remote_head = commit
                break
            delay = random.uniform(0.5, 1.0) * BACKOFF_S * 2 ** (attempt - 1)
            log.info("sync %s: push rejected (another machine pushed first); again in %.1f s", target.machine, delay)
            time.sleep(delay)
            remote_head = _fetch(target, branch, tracking)
            head, changes = _pull(target, branch, head, remote_head, result), None
        else:
            lock = next((line.strip() for line in refused.splitlines() if "Unable to create" in line), None)
            if lock:
                raise SyncError(f"push to {target.remote} still refused after {PUSH_ATTEMPTS} attempts: the remote "
                                f"holds a lock ({lock}); if no push to it is running (a killed one left it), "
                                "remove that file on the remote; the records stay here")
            raise SyncError(f"push to {target.remote} still rejected after {PUSH_ATTEMPTS} attempts (busy "
                            "remote); the records stay here and the next cycle pushes them")
        result.head = result.head or remote_head
        result.waiting = _keep_unpushed(target, parts, lines, remote_head, on_remote, changes.here)
        if scan:
            (target.state / LAST_SCAN).touch()
            (target.state / SCAN_NEEDED).unlink(missing_ok=True)
        running.unlink(missing_ok=True)
    return result


def _pull(target: SyncTarget, branch: str, head: str | None, remote_head: str | None,
          result: CycleResult) -> str | None:
    """Bring the branch, the work tree and the index to the remote's head (others' records);
    returns the branch's head."""
    if remote_head is None or remote_head == head:
        return head
    if head is not None and git(target.repo, "merge-base", "--is-ancestor", head, remote_head,
                                check=False).returncode != 0:
        # Checked before the first pull too (check_ownership); here again after a lost race.
        raise SyncError(f"{target.remote}/{branch} no longer holds {branch}'s head {head[:12]} (the remote was "
                        "rewritten by force); the sync only moves forward: restore the remote branch or move "
                        f"this clone by hand (git branch keep && git reset --keep {target.remote}/{branch})")
    followed = advance(target, branch, head, remote_head)
    result.pulled += followed.pulled
    result.conflicts += followed.conflicts
    return remote_head


def _push(target: SyncTarget, branch: str, commit: str) -> tuple[bool, str]:
    """Push ``commit`` to the branch, never forced: (True, "") when the remote took it, (False,
    what it said) when another machine pushed first or holds the ref's lock; any other refusal
    raises, saying which it is."""
    # No delta search: records are small and the search costs more than it saves.
    pushed = git(target.repo, "-c", "pack.window=0", "push", "--porcelain", target.remote,
                 f"{commit}:refs/heads/{branch}", check=False)
    if pushed.returncode == 0:
        return True, ""
    text = redact(pushed.stderr.decode(errors="replace") + pushed.stdout.decode(errors="replace"))
    if any(race in text for race in _PUSH_RACES):
        return False, text
    if any(sign in text for sign in _UNREACHABLE):
        raise SyncError(f"cannot reach the push URL of remote {target.remote!r}: {last_line(text)} (the network, "
                        "the URL, or a key that may not push); the records stay here and the next cycle pushes them")
    why = next((line.strip() for line in text.splitlines() if "rejected" in line or "denied" in line
                or "declined" in line), last_line(text))
    if any(sign in text for sign in _PROTECTED):
        raise SyncError(f"push to {target.remote} refused: {why}; if the branch is protected, allow this "
                        "machine's deploy key to push to it (never force)")
    raise SyncError(f"push to {target.remote} failed: {why}; the records stay here and the next cycle tries again")


def _keep_unpushed(target: SyncTarget, parts: list[Path], lines: list[str], remote_head: str | None,
                   on_remote: dict[str, str] | None, here: dict[str, str]) -> int:
    """Drop the journal's parts, carrying over in one new part every line whose record the
    remote does not hold, checked by path and blob id: ``on_remote`` (the remote head's blobs,
    when the cycle knows them) against ``here`` (each file as the cycle read it; a file
    rewritten since has a line of its own in the live journal). Returns how many lines wait."""
    paths = target.clone_paths(lines)
    if on_remote is None:
        on_remote = tree_blobs(target, remote_head, paths)
    waiting = [line for line, path in zip(lines, paths, strict=True)
               if path in here and on_remote.get(path) != here[path]]
    if waiting:
        carried = target.state / f"{PENDING}.{time.time_ns()}.{os.getpid()}"
        write_bytes_atomic(carried, "".join(f"{line}\n" for line in waiting).encode())
    for part in parts:
        if not waiting or part.name != carried.name:
            part.unlink(missing_ok=True)
    return len(waiting)


def _fetch(target: SyncTarget, branch: str, tracking: str) -> str | None:
    """The remote branch's head (None while a fresh remote has no such branch). An unreachable
    remote raises: the records wait here for the next cycle."""
    # No submodules to fetch: without the flag git reads the whole index to look for them.
    fetched = git(target.repo, "fetch", "--quiet", "--no-tags", "--no-recurse-submodules", target.remote,
                  f"+refs/heads/{branch}:{tracking}", check=False)
    if fetched.returncode == 0:
        return rev(target.repo, tracking)
    text = redact(fetched.stderr.decode(errors="replace"))
    if "couldn't find remote ref" in text:
        return None
    raise SyncError(f"cannot reach remote {target.remote!r}: {last_line(text)}; the records wait here and the "
                    "next cycle pushes them")


