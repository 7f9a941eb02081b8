"""The results sync on real git: a bare repository in tmp_path as the remote, clones as machines."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from benchmark.records.episodes import EpisodeKey
from benchmark.records.journal import journal_path
from benchmark.records.results import new_record, write_record
from worker.sync import SyncError, SyncTarget, run_cycle

SETTINGS = ["bias_lm_always_on", "scale_lm_always_on", "iir_lm_always_on", "fir_lm_always_on"]
TASKS = ["click_bell", "adjust_bottle", "open_laptop", "lift_pot", "stack_blocks_two"]


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def remote(tmp_path) -> Path:
    """A bare remote that refuses non-fast-forward updates and logs every ref update, seeded
    with a first commit (users' results repositories have one)."""
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(bare)], check=True)
    git(bare, "config", "receive.denyNonFastForwards", "true")
    git(bare, "config", "receive.denyDeletes", "true")
    hook = bare / "hooks" / "update"
    hook.write_text(f'#!/bin/sh\necho "$1 $2 $3" >> "{tmp_path / "ref-updates.log"}"\n')
    hook.chmod(0o755)
    seed = tmp_path / "seed"
    subprocess.run(["git", "clone", "--quiet", str(bare), str(seed)], check=True, capture_output=True)
    (seed / "results").mkdir()
    (seed / "results" / "README.md").write_text("episode records\n")
    (seed / "README.md").write_text("the results repository\n")
    git(seed, "add", "-A")
    git(seed, "-c", "user.name=seed", "-c", "user.email=seed@x", "commit", "--quiet", "-m", "seed")
    git(seed, "push", "--quiet", "origin", "HEAD:main")
    return bare


def machine(tmp_path: Path, remote: Path, name: str) -> SyncTarget:
    clone = tmp_path / name
    subprocess.run(["git", "clone", "--quiet", str(remote), str(clone)], check=True, capture_output=True)
    return SyncTarget.find(clone / "results", name)


def record(policy: str, setting: str, task: str, repeat: int, machine_name: str, *, error: str | None = None,
           finished_at: str = "2026-11-30T10:00:00+00:00", success: bool = True) -> dict:
    rec = new_record(EpisodeKey(policy, setting, task, repeat), success=success and error is None, error=error,
                     steps=3, seed=1, perturbation_log=None, spec_name="lm20", spec_sha256="0" * 64,
                     backend="kinematic", started_at=finished_at, finished_at=finished_at, duration_s=1.0,
                     worker={"machine": machine_name})
    return rec


def remote_records(remote: Path) -> set[str]:
    listed = git(remote, "ls-tree", "-r", "--name-only", "main", "results")
    return {line for line in listed.splitlines() if line.endswith(".json")}


def assert_fast_forwards_only(remote: Path, log: Path) -> int:
    updates = [line.split() for line in log.read_text().splitlines()]
    assert set(updates[0][1]) == {"0"}  # the seed created the branch; every later update moves it forward
    for ref, old, new in updates[1:]:
        assert ref == "refs/heads/main"
        subprocess.run(["git", "-C", str(remote), "merge-base", "--is-ancestor", old, new], check=True)
    return len(updates) - 1


def in_rebase(target: SyncTarget) -> bool:
    return any((target.repo / ".git" / state).exists() for state in ("rebase-merge", "rebase-apply"))


@pytest.mark.slow
def test_three_machines_syncing_concurrently_end_with_exactly_the_union(tmp_path, remote, monkeypatch):
    import worker.sync

    monkeypatch.setattr(worker.sync, "BACKOFF_S", 0.1)  # jittered retries, quicker than in production
    machines = [machine(tmp_path, remote, f"m{i}") for i in range(3)]
    episodes = [(s, t, r) for s in SETTINGS for t in TASKS for r in range(100)]  # 2,000 per machine
    failures: list[BaseException] = []
    outran: list[str] = []  # cycles whose pushes lost every race: allowed, their commit waits

    def work(index: int, target: SyncTarget) -> None:
        try:
            for cycle in range(30):  # each machine runs its own policy: distinct records
                for s, t, r in episodes[cycle::30]:
                    write_record(target.results_dir, record(f"P{index}", s, t, r, target.machine),
                                 durable=False)
                try:
                    run_cycle(target)
                except SyncError as exc:
                    if "still rejected" not in str(exc):
                        raise
                    outran.append(target.machine)
                assert not in_rebase(target)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(i, m)) for i, m in enumerate(machines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not failures, failures
    assert len(outran) < 30, outran  # races are lost now and then, not as a rule
    for target in machines:  # a last cycle each: every machine has pushed and pulled everything
        run_cycle(target)
    wanted = {f"results/P{i}/{s}/{t}/episode_{r}.json" for i in range(3) for s, t, r in episodes}
    assert remote_records(remote) == wanted
    assert assert_fast_forwards_only(remote, tmp_path / "ref-updates.log") >= 30
    for target in machines:
        assert not in_rebase(target)
        assert git(target.repo, "status", "--porcelain", "--", "results") == ""
        run_cycle(target)
        assert {str(p.relative_to(target.repo)) for p in target.results_dir.rglob("*.json")} == wanted


def test_the_same_episode_written_on_two_machines_converges_by_the_rule(tmp_path, remote):
    a, b = machine(tmp_path, remote, "alpha"), machine(tmp_path, remote, "beta")
    # alpha's record is an error, beta's is valid: valid wins on both, whoever pushed first.
    write_record(a.results_dir, record("P", "bias_lm_always_on", "click_bell", 0, "alpha",
                                       error="eval_error: ValueError: x", finished_at="2026-11-30T09:00:00+00:00"))
    # Two valid ones: the earlier finished_at wins.
    write_record(a.results_dir, record("P", "bias_lm_always_on", "click_bell", 1, "alpha",
                                       finished_at="2026-11-30T09:00:00+00:00", success=False))
    write_record(b.results_dir, record("P", "bias_lm_always_on", "click_bell", 0, "beta"))
    write_record(b.results_dir, record("P", "bias_lm_always_on", "click_bell", 1, "beta",
                                       finished_at="2026-11-30T10:00:00+00:00"))
    first = run_cycle(a)
    assert first.pushed and first.committed == 2
    second = run_cycle(b)  # rebases on alpha's commit: both files conflict
    assert second.pushed and len(second.conflicts) == 2
    assert all(c.startswith("conflicts/results/P/bias_lm_always_on/click_bell/") for c in second.conflicts)
    third = run_cycle(a)  # alpha pulls beta's winning record (its own stood for episode 1)
    assert third.pulled == ["results/P/bias_lm_always_on/click_bell/episode_0.json"]
    for name in ("episode_0.json", "episode_1.json"):
        on_a = (a.results_dir / "P" / "bias_lm_always_on" / "click_bell" / name).read_bytes()
        on_b = (b.results_dir / "P" / "bias_lm_always_on" / "click_bell" / name).read_bytes()
        assert on_a == on_b
    settled = {name: json.loads((a.results_dir / "P" / "bias_lm_always_on" / "click_bell" / name).read_text())
               for name in ("episode_0.json", "episode_1.json")}
    assert settled["episode_0.json"]["worker"]["machine"] == "beta" and settled["episode_0.json"]["error"] is None
    assert settled["episode_1.json"]["worker"]["machine"] == "alpha"  # earlier finished_at
    kept = sorted((b.state / "conflicts").rglob("*"))
    kept_files = [p for p in kept if p.is_file()]
    assert len(kept_files) == 2  # the losers, named in the cycle's log line
    assert {p.relative_to(b.state).as_posix() for p in kept_files} == set(second.conflicts)
    assert any(".alpha." in p.name for p in kept_files) and any(".beta." in p.name for p in kept_files)
    assert not in_rebase(a) and not in_rebase(b)


def test_an_unreachable_remote_fails_cleanly_and_loses_nothing(tmp_path, remote, caplog):
    a = machine(tmp_path, remote, "alpha")
    moved = remote.with_name("away.git")
    remote.rename(moved)
    for repeat in range(3):
        write_record(a.results_dir, record("P", "bias_lm_always_on", "click_bell", repeat, "alpha"))
        with pytest.raises(SyncError, match="cannot reach remote 'origin'") as failed:
            run_cycle(a)
        assert "\n" not in str(failed.value)
        assert not in_rebase(a)
        assert len(list(a.state.glob("sync-journal.pending.*"))) == repeat + 1  # the journal kept
    moved.rename(remote)
    done = run_cycle(a)
    assert done.pushed
    assert remote_records(remote) == {f"results/P/bias_lm_always_on/click_bell/episode_{r}.json" for r in range(3)}
    assert not journal_path(a.results_dir).exists() or journal_path(a.results_dir).read_text() == ""


def test_a_remote_url_with_a_token_is_refused_and_never_shown(tmp_path, remote, caplog):
    a = machine(tmp_path, remote, "alpha")
    token = "ghp_" + "x" * 36
    git(a.repo, "remote", "set-url", "origin", f"https://{token}@example.invalid/results.git")
    write_record(a.results_dir, record("P", "bias_lm_always_on", "click_bell", 0, "alpha"))
    with caplog.at_level(logging.DEBUG), pytest.raises(SyncError, match="carries a credential") as refused:
        run_cycle(a)
    assert token not in str(refused.value) and token not in caplog.text
    git(a.repo, "remote", "set-url", "origin", f"https://user:{token}@example.invalid/results.git")
    with pytest.raises(SyncError) as refused:
        run_cycle(a)
    assert token not in str(refused.value) and "***@example.invalid" in str(refused.value)


def test_scan_finds_records_the_journal_missed_and_only_records_are_staged(tmp_path, remote):
    a = machine(tmp_path, remote, "alpha")
    run_cycle(a)  # a clone's first cycle scans: this one finds nothing yet
    by_hand = a.results_dir / "P" / "bias_lm_always_on" / "click_bell" / "episode_4.json"
    by_hand.parent.mkdir(parents=True)
    by_hand.write_text(json.dumps(record("P", "bias_lm_always_on", "click_bell", 4, "alpha")))
    (a.results_dir / "notes.txt").write_text("a user's own file in the results: never staged by the sync")
    plain = run_cycle(a)
    assert plain.committed == 0  # not in the journal
    scanned = run_cycle(a, scan=True)
    assert scanned.committed == 1 and scanned.pushed
    assert remote_records(remote) == {"results/P/bias_lm_always_on/click_bell/episode_4.json"}
    assert "results/notes.txt" not in git(remote, "ls-tree", "-r", "--name-only", "main")
    message = git(remote, "log", "-1", "--format=%an|%s", "main")
    assert message == "rtbench alpha|results: alpha +1 episodes (P)"


def test_a_rebase_in_progress_stops_the_cycle_and_nothing_is_rewritten(tmp_path, remote):
    """The sync never rebases: a rebase in the clone is someone else's (or an older rtbench's),
    and the cycle waits for it with one line instead of aborting it (an abort resets the branch)."""
    a, b = machine(tmp_path, remote, "alpha"), machine(tmp_path, remote, "beta")
    write_record(a.results_dir, record("P", "bias_lm_always_on", "click_bell", 0, "alpha"))
    run_cycle(a)
    write_record(b.results_dir, record("P", "bias_lm_always_on", "click_bell", 0, "beta", success=False))
    git(b.repo, "add", "-A", "results")
    git(b.repo, "-c", "user.name=b", "-c", "user.email=b@x", "commit", "--quiet", "-m", "local")
    git(b.repo, "fetch", "--quiet", "origin")
    subprocess.run(["git", "-C", str(b.repo), "-c", "user.name=b", "-c", "user.email=b@x", "rebase", "origin/main"],
                   capture_output=True)  # stops at the conflict
    assert in_rebase(b)
    before = git(remote, "rev-parse", "main")
    with pytest.raises(SyncError, match="a rebase is in progress .* rebase --abort") as refused:
        run_cycle(b)
    assert "\n" not in str(refused.value) and in_rebase(b)  # left for its owner
    assert git(remote, "rev-parse", "main") == before
    git(b.repo, "rebase", "--abort")
    with pytest.raises(SyncError, match="1 commit\\(s\\) that origin/main does not have"):
        run_cycle(b)  # the hand-made commit is not the sync's to push
    git(b.repo, "reset", "--keep", "origin/main")
    settled = run_cycle(b)  # alpha's record is on the remote; beta's own copy lost by the rule
    assert settled.head == git(remote, "rev-parse", "main") == git(b.repo, "rev-parse", "HEAD")
    assert json.loads((b.results_dir / "P" / "bias_lm_always_on" / "click_bell" / "episode_0.json").read_text())[
        "worker"]["machine"] == "alpha"


def test_without_a_push_slot_the_commit_waits_for_the_next_cycle(tmp_path, remote, broker):
    from worker.queue.state import QueueState

    state = QueueState(broker)
    assert [state.take_push_slot("alpha", 4, 180.0, now=1.0) for _ in range(5)] == [True] * 4 + [False]
    a = machine(tmp_path, remote, "alpha")
    write_record(a.results_dir, record("P", "bias_lm_always_on", "click_bell", 0, "alpha"))
    waiting = run_cycle(a, push_allowed=lambda: False)
    assert waiting.committed == 0 and not waiting.pushed and "budget" in (waiting.deferred or "")
    assert waiting.waiting == 1 and "1 waiting" in waiting.line()
    assert remote_records(remote) == set()
    later = run_cycle(a)
    assert later.committed == 1 and later.pushed and later.waiting == 0
    assert remote_records(remote) == {"results/P/bias_lm_always_on/click_bell/episode_0.json"}


def test_an_os_error_in_a_cycle_is_one_line_noted_for_status(tmp_path, remote, redis_server, broker):
    from worker.queue.state import QueueState
    from worker.settings import Settings
    from worker.sync_run import sync_once

    a = machine(tmp_path, remote, "alpha")
    (a.state / "sync.lock").mkdir(parents=True)  # the cycle's lock cannot be opened
    settings = Settings(broker_url=redis_server, results_dir=a.results_dir, machine="alpha")
    with pytest.raises(SyncError, match="IsADirectoryError") as failed:
        sync_once(settings)
    assert "\n" not in str(failed.value)
    noted = QueueState(broker).sync_statuses()["alpha"]
    assert "sync.lock" in noted["last_error"] and "last_ok" not in noted


def test_reports_are_shared_and_the_newest_generation_wins(tmp_path, remote):
    a, b = (SyncTarget.find(machine(tmp_path, remote, name).results_dir, name, ("reports",))
            for name in ("alpha", "beta"))

    def report(target: SyncTarget, generated: str) -> None:
        (target.repo / "reports").mkdir(exist_ok=True)
        content = {"generated_at": generated, "by": target.machine}
        (target.repo / "reports" / "lm20.json").write_text(json.dumps(content))
        (target.repo / "reports" / "lm20.md").write_text(f"# lm20\n\nGenerated: {generated}\n")
        (target.repo / "reports" / "lm20.html").write_text(  # as reporting/render/html.py words it
            f"<p class='meta'>Spec <b>lm20</b>: 80 episodes per policy. Generated {generated}.</p>")

    report(a, "2026-12-01T10:00:00")
    report(b, "2026-12-01T11:00:00")  # newer
    assert run_cycle(a).pushed
    second = run_cycle(b)  # beta's own, newer reports stand; alpha's are kept aside
    assert second.pushed and len(second.conflicts) == 3
    assert all(c.startswith("conflicts/reports/lm20.") and ".report." in c for c in second.conflicts)
    run_cycle(a)
    for target in (a, b):
        assert json.loads((target.repo / "reports" / "lm20.json").read_text())["by"] == "beta"
        assert "11:00:00" in (target.repo / "reports" / "lm20.md").read_text()
        assert "11:00:00" in (target.repo / "reports" / "lm20.html").read_text()
    report(a, "2026-12-01T12:00:00")  # alpha regenerates later: its version goes out and wins
    report(b, "2026-12-01T09:00:00")  # an older generation written on beta meanwhile loses
    assert run_cycle(a).pushed
    run_cycle(b)
    for target in (a, b):
        assert json.loads((target.repo / "reports" / "lm20.json").read_text())["by"] == "alpha"
    assert git(remote, "show", "main:reports/lm20.md").endswith("Generated: 2026-12-01T12:00:00")
    assert "12:00:00" in git(remote, "show", "main:reports/lm20.html")


def test_a_git_lock_is_removed_only_when_no_git_runs_in_the_clone(tmp_path, remote):
    from worker.sync import SyncBusy

    a = machine(tmp_path, remote, "alpha")
    write_record(a.results_dir, record("P", "bias_lm_always_on", "click_bell", 0, "alpha"))
    long_ago = time.time() - 3600
    for name in ("index.lock", "gc.log.lock"):  # as a kill -9 of git leaves them
        (a.git_dir / name).write_text("")
        os.utime(a.git_dir / name, (long_ago, long_ago))
    # A git still working in the clone (it waits on its input): its locks are its own.
    busy = subprocess.Popen(["git", "hash-object", "--stdin"], cwd=a.repo, stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)
    try:
        with pytest.raises(SyncBusy, match=r"git is running in .* holds index.lock"):
            run_cycle(a)
        (a.git_dir / "index.lock").unlink()  # only a lock the cycle does not need: it goes on
        assert run_cycle(a).pushed and (a.git_dir / "gc.log.lock").exists()
    finally:
        busy.communicate(b"x", timeout=10)
    # No git in sight, but a fresh lock: a git of the host or of another container may hold it.
    (a.git_dir / "index.lock").write_text("")
    write_record(a.results_dir, record("P", "bias_lm_always_on", "click_bell", 1, "alpha"))
    with pytest.raises(SyncBusy, match=r"index.lock in .* is younger than 30 s"):
        run_cycle(a)
    os.utime(a.git_dir / "index.lock", (long_ago, long_ago))
    assert run_cycle(a).pushed  # stale now: removed, with the other stale lock
    assert not (a.git_dir / "index.lock").exists() and not (a.git_dir / "gc.log.lock").exists()
    assert len(remote_records(remote)) == 2


def test_a_cycle_run_by_hand_waits_for_a_fresh_lock_to_grow_stale(tmp_path, remote):
    import dataclasses

    a = dataclasses.replace(machine(tmp_path, remote, "alpha"), lock_grace_s=2.0)
    write_record(a.results_dir, record("P", "bias_lm_always_on", "click_bell", 0, "alpha"))
    (a.git_dir / "index.lock").write_text("")  # a sync service killed a moment ago left it
    started = time.monotonic()
    assert run_cycle(a, wait_s=30).pushed  # as `worker sync --once` runs it
    assert time.monotonic() - started >= 1.0 and not (a.git_dir / "index.lock").exists()


def test_a_stop_note_travels_with_the_records_and_two_copies_agree(tmp_path, remote):
    """The note a stop rule leaves (benchmark/records/stop_notes.py) is pushed like a record;
    two machines that wrote it (the same bytes, from Redis) settle without a conflict."""
    from benchmark.records.stop_notes import note_name, read_stop_note, write_stop_note

    a, b = machine(tmp_path, remote, "alpha"), machine(tmp_path, remote, "beta")
    note = {"rule": "decided:P,Q", "policies": ["P", "Q"], "after_round": 3, "rounds": 20, "detail": "x",
            "spec_sha256": "0" * 64, "settings": ["bias_lm_always_on"], "tasks": ["click_bell"], "machine": "alpha",
            "at": "2026-12-06T10:00:00+00:00"}
    write_record(a.results_dir, record("P", "bias_lm_always_on", "click_bell", 0, "alpha"))
    write_stop_note(a.results_dir, "P", note)
    write_stop_note(b.results_dir, "P", note)
    assert run_cycle(a).pushed
    assert f"results/P/{note_name('0' * 64)}" in remote_records(remote)
    second = run_cycle(b)
    assert not second.conflicts and not second.rejected
    assert read_stop_note(b.results_dir, "P", "0" * 64) == note
    assert (b.results_dir / "P" / "bias_lm_always_on" / "click_bell" / "episode_0.json").exists()
