"""kill -9 of a sync cycle at every git call it makes, in turn: nothing written is ever lost.

A shim named ``git`` first on the cycle's PATH counts the calls; at call N it kills the cycle's
process (and the git it started) before git starts, while it runs, or after it finished and
before the cycle saw its answer. Between kills both machines write records, some of them the
same episodes, and the other machine pushes, so that every kill meets a pull, a settled
conflict and a push. At the end the remote holds every record ever written, each episode as
the rule settles all its versions, reached by fast-forwards only, and the journals are empty.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.records.journal import journal_path
from benchmark.records.results import preferred_record, write_record
from tests.integration.test_sync import assert_fast_forwards_only, git, machine, record, remote  # noqa: F401
from worker.sync import PENDING, SyncTarget, run_cycle

SHIM = """#!/bin/sh
# Counts git calls; at call $KILL_AT kills the cycle (its parent) and the git it started.
n=$(( $(cat "$SHIM_COUNTER") + 1 ))
echo "$n" > "$SHIM_COUNTER"
if [ "$n" != "$KILL_AT" ]; then exec "$REAL_GIT" "$@"; fi
case "$KILL_MODE" in
  before) kill -9 "$PPID"; exit 137 ;;
  after) "$REAL_GIT" "$@"; kill -9 "$PPID"; exit 137 ;;
  during) exec 3<&0; "$REAL_GIT" "$@" <&3 & g=$!; sleep "$KILL_DELAY"; kill -9 "$PPID" "$g"; exit 137 ;;
esac
"""
# lock_grace_s=0: the next cycle starts at once, while the killed git's locks are fresh.
CYCLE = ("import sys, dataclasses; from pathlib import Path; from worker.sync import SyncTarget, run_cycle; "
         "t = dataclasses.replace(SyncTarget.find(Path(sys.argv[1]), sys.argv[2]), lock_grace_s=0); "
         "print(run_cycle(t).line())")
TASKS = ["click_bell", "adjust_bottle", "open_laptop"]


def preferred_of(versions: list[bytes]) -> bytes:
    return min(versions, key=functools.cmp_to_key(lambda a, b: -1 if preferred_record(a, b) else 1))


class Writer:
    """Writes records on a machine and remembers every version ever written, by path."""

    def __init__(self, written: dict[str, list[bytes]]) -> None:
        self.written = written
        self.count = 0

    def write(self, target: SyncTarget, policy: str, task: str, repeat: int, *, error: str | None = None,
              minute: int = 0) -> None:
        rec = record(policy, "bias_lm_always_on", task, repeat, target.machine, error=error,
                     finished_at=f"2026-11-30T10:{minute:02d}:00+00:00")
        write_record(target.results_dir, rec, durable=False)
        path = f"results/{policy}/bias_lm_always_on/{task}/episode_{repeat}.json"
        self.written.setdefault(path, []).append(json.dumps(rec, indent=2).encode())
        self.count += 1


def killed_cycle(target: SyncTarget, shim_dir: Path, kill_at: int, mode: str, delay: float) -> int:
    counter = shim_dir / "count"
    counter.write_text("0")
    env = {**os.environ, "PATH": f"{shim_dir}:{os.environ['PATH']}", "SHIM_COUNTER": str(counter),
           "KILL_AT": str(kill_at), "KILL_MODE": mode, "KILL_DELAY": f"{delay:.3f}",
           "REAL_GIT": shutil.which("git")}
    done = subprocess.run([sys.executable, "-c", CYCLE, str(target.results_dir), target.machine], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, -9), done.stderr[-2000:]
    return done.returncode


def assert_known_state(target: SyncTarget) -> None:
    """What a kill may leave: never a detached HEAD, a rebase, or a branch behind the remote's."""
    assert git(target.repo, "symbolic-ref", "--short", "HEAD") == "main"
    assert not any((target.git_dir / d).exists() for d in ("rebase-merge", "rebase-apply", "MERGE_HEAD"))


@pytest.mark.slow
def test_a_cycle_killed_at_every_git_call_loses_no_record(tmp_path, remote):  # noqa: F811
    alpha, beta = (dataclasses.replace(machine(tmp_path, remote, name), lock_grace_s=0) for name in ("alpha", "beta"))
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    (shim_dir / "git").write_text(SHIM)
    (shim_dir / "git").chmod(0o755)
    written: dict[str, list[bytes]] = {}
    writer, rng = Writer(written), random.Random(7)
    kills, kill_at = 0, 0
    while True:
        kill_at += 1
        finished = False
        for mode in ("before", "during", "after"):
            n = writer.count
            # alpha: new records and a rewrite of one of its own episodes (settled at write time);
            # beta: a new record and one of alpha's episodes, pushed before alpha's cycle.
            writer.write(alpha, "A", TASKS[n % 3], n)
            writer.write(alpha, "A", TASKS[n % 3], n + 1, error="eval_error: x" if n % 2 else None, minute=n % 50)
            writer.write(alpha, "A", TASKS[(n - 3) % 3], max(n - 3, 0), minute=(n * 7) % 50)
            writer.write(beta, "B", TASKS[n % 3], n)
            writer.write(beta, "A", TASKS[n % 3], n + 1, minute=(n * 11) % 50)
            run_cycle(beta)
            code = killed_cycle(alpha, shim_dir, kill_at, mode, rng.uniform(0.0, 0.02))
            assert_known_state(alpha)
            if code == 0:
                finished = True
                break
            kills += 1
        if finished:
            break
    print("kills", kills, "written", len(written), "shared", sum(len(v) > 1 for v in written.values()))
    assert kills >= 40, kills  # a cycle makes 15+ git calls, each killed three ways
    for target in (alpha, beta, alpha, beta):  # settle what the kills left
        run_cycle(target)
    on_remote = {p for p in git(remote, "ls-tree", "-r", "--name-only", "main", "results").splitlines()
                 if p.endswith(".json")}
    assert on_remote == set(written)  # every record ever written
    for path, versions in written.items():  # each as the rule settles all its versions
        assert git(remote, "show", f"main:{path}") == preferred_of(versions).decode(), path
        for target in (alpha, beta):
            assert (target.repo / path).read_bytes() == preferred_of(versions), (target.machine, path)
    assert_fast_forwards_only(remote, tmp_path / "ref-updates.log")
    for target in (alpha, beta):
        assert not list(target.state.glob(f"{PENDING}.*"))
        assert not journal_path(target.results_dir).exists() or not journal_path(target.results_dir).read_text()
        assert git(target.repo, "status", "--porcelain") == ""
