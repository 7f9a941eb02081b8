"""Results sync: one cycle adding 1,000 records to clones holding 10,000 and 100,000 committed
records, in process and as the whole ``python -m worker sync --once`` process (imports, Redis
bookkeeping included), against ``git add -A && git commit`` of 1,000 records on the same clone
in the same run, the three interleaved run by run.

    .venv/bin/python tests/perf/perf_sync.py            # ~4 minutes, ~2 GB of temporary files

Targets at 100,000 committed records: the in-process cycle (known state, fetch, commit, push to
a local bare remote, the branch moved) at most 0.3x the baseline, the whole process at most
0.5x, and the cycle growing at most 2x from 10,000 to 100,000 committed records.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmark.records.episodes import EpisodeKey
from benchmark.records.results import new_record, write_record
from producer.embedded import EmbeddedRedis
from worker.sync import SyncTarget, run_cycle

SETTINGS = [f"bias_lm_s{i:02d}" for i in range(20)]
TASKS = [f"task_{i:02d}" for i in range(50)]
ADDED = 1_000
RUNS = 5


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True)


def record(policy: str, setting: str, task: str, repeat: int) -> dict:
    config = {"perturbation_type": "bias", "params": {"b": [0.1] * 14}}
    return new_record(EpisodeKey(policy, setting, task, repeat), success=repeat % 3 == 0, error=None, steps=100,
                      seed=repeat, perturbation_log={"config": config},
                      spec_name="full", spec_sha256="0" * 64, backend="kinematic", started_at="2026-11-30T10:00:00",
                      finished_at="2026-11-30T10:01:00", duration_s=60.0, worker={"machine": "perf"})


def write_plain(results: Path, policy: str, count: int) -> None:
    """Committed history, written fast (no fsync, no journal): only the repository's size matters."""
    for i in range(count):
        key = EpisodeKey(policy, SETTINGS[i % 20], TASKS[(i // 20) % 50], i // 1000)
        path = results / f"{key.id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record(*key.id.split("/")[:3], i // 1000), indent=2))


def make_clone(root: Path, committed: int) -> SyncTarget:
    remote = root / "remote.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(remote)], check=True)
    clone = root / "clone"
    subprocess.run(["git", "clone", "--quiet", str(remote), str(clone)], check=True, capture_output=True)
    # No automatic gc: the baseline's loose objects would start one in the background, and
    # whichever side runs next would pay for it.
    git(clone, "config", "gc.auto", "0")
    write_plain(clone / "results", "Base", committed)
    git(clone, "add", "-A")
    git(clone, "-c", "user.name=perf", "-c", "user.email=perf@x", "commit", "--quiet", "-m", "history")
    git(clone, "push", "--quiet", "origin", "HEAD:main")
    target = SyncTarget.find(clone / "results", "perf", min_free=0)
    run_cycle(target)  # configures the clone (index v4, untracked cache) as in production
    return target


def add_records(target: SyncTarget, policy: str, count: int) -> None:
    for i in range(count):
        write_record(target.results_dir, record(policy, SETTINGS[i % 20], TASKS[(i // 20) % 50], i // 1000),
                     durable=False)


def cycle_time(target: SyncTarget, run: int) -> float:
    add_records(target, f"Cycle{run}", ADDED)
    os.sync()  # (untimed) no writeback of the last step's files during this one
    start = time.perf_counter()
    result = run_cycle(target)
    elapsed = time.perf_counter() - start
    assert result.committed == ADDED and result.pushed, result
    return elapsed


def process_time(target: SyncTarget, run: int, env: dict[str, str]) -> float:
    add_records(target, f"Process{run}", ADDED)
    os.sync()  # (untimed) no writeback of the last step's files during this one
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "worker", "sync", "--once"], env=env, capture_output=True,
                          text=True)
    elapsed = time.perf_counter() - start
    assert done.returncode == 0 and f"committed {ADDED} record(s)" in done.stdout, done
    return elapsed


def baseline_time(target: SyncTarget, run: int) -> float:
    add_records(target, f"Plain{run}", ADDED)
    os.sync()  # (untimed) no writeback of the last step's files during this one
    start = time.perf_counter()
    git(target.repo, "add", "-A")
    git(target.repo, "-c", "user.name=perf", "-c", "user.email=perf@x", "commit", "--quiet", "-m", "plain")
    elapsed = time.perf_counter() - start
    git(target.repo, "push", "--quiet", "origin", "HEAD:main")  # (untimed) the clone stays the sync's
    return elapsed


def measure(committed: int, redis_url: str, processes: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        target = make_clone(Path(directory), committed)
        print(f"  clone with {committed:,} committed records made in {time.perf_counter() - started:.0f} s")
        # As users run it: Python's bytecode cache on (this machine's PYTHONDONTWRITEBYTECODE=1
        # would compile rtbench's modules in every process).
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(RTBENCH_BROKER_URL=redis_url, RTBENCH_RESULTS_DIR=str(target.results_dir), RTBENCH_MACHINE="perf",
                   RTBENCH_SYNC_PUSHES_PER_MINUTE="1000", RTBENCH_SYNC_MIN_FREE_MB="0")
        times: dict[str, list[float]] = {"cycle": [], "process": [], "baseline": []}
        if processes:
            process_time(target, -1, env)  # the bytecode cache written, the page cache warm
        for run in range(RUNS):
            times["baseline"].append(baseline_time(target, run))
            times["cycle"].append(cycle_time(target, run))
            if processes:
                times["process"].append(process_time(target, run, env))
        return {name: statistics.median(values) for name, values in times.items() if values}


def main() -> int:
    os.environ.setdefault("GIT_AUTHOR_DATE", "2026-11-30T10:00:00")
    with tempfile.TemporaryDirectory() as directory:
        server = EmbeddedRedis(Path(directory)).start()
        try:
            small = measure(10_000, server.url, processes=False)
            large = measure(100_000, server.url, processes=True)
        finally:
            server.stop()
    print(f"10,000 committed: cycle +{ADDED:,} {small['cycle']:.3f} s, "
          f"git add -A && git commit {small['baseline']:.3f} s")
    print(f"100,000 committed: cycle +{ADDED:,} {large['cycle']:.3f} s, "
          f"'worker sync --once' {large['process']:.3f} s, git add -A && git commit {large['baseline']:.3f} s")
    ratio, process, growth = (large["cycle"] / large["baseline"], large["process"] / large["baseline"],
                              large["cycle"] / small["cycle"])
    print(f"1. cycle vs baseline (100,000 committed): {ratio:.2f}x   target <= 0.3x -> "
          f"{'ok' if ratio <= 0.3 else 'MISSED'}")
    print(f"2. 'worker sync --once' process vs baseline: {process:.2f}x   target <= 0.5x -> "
          f"{'ok' if process <= 0.5 else 'MISSED'}")
    print(f"3. cycle growth from 10,000 to 100,000 committed: {growth:.2f}x   target <= 2x -> "
          f"{'ok' if growth <= 2 else 'MISSED'}")
    return 0 if ratio <= 0.3 and process <= 0.5 and growth <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
