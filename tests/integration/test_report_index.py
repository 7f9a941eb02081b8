"""The report index against the plain scan on a tree that changes in every way between runs:
the numbers must be identical, whatever the scope, options or spec of each run."""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

import pytest

import reporting.scan
from benchmark.common.atomic import write_bytes_atomic
from benchmark.records.episodes import EpisodeKey
from benchmark.records.results import new_record, write_record
from benchmark.spec.slicing import SpecSlice
from benchmark.spec.spec_file import load_spec
from reporting.cli import make_report
from reporting.index_layout import SCHEMA

SPEC = load_spec("lm20")
SETTINGS = [s.id for s in SPEC.settings[:5]]  # more than PARALLEL_UNITS per policy: the cold run forks
TASKS = list(SPEC.tasks[:4])
SETTLE_S = 0.05


@pytest.fixture
def quick_settle(monkeypatch):
    """Directories settle after 50 ms instead of 2 s, so that the test can change a tree many
    times and still exercise the trust in unchanged directories (each step waits that long)."""
    monkeypatch.setattr(reporting.scan, "SETTLE_NS", int(SETTLE_S * 1e9))


def record(policy: str, setting: str, task: str, repeat: int, rng: random.Random) -> dict:
    error = rng.choice([None] * 5 + ["eval_error: ValueError: x", "unstable_seed"])
    return new_record(EpisodeKey(policy, setting, task, repeat), success=error is None and rng.random() < 0.6,
                      error=error, steps=5, seed=1,
                      perturbation_log={"config": SPEC.config(setting, task, repeat)}, spec_name="lm20",
                      spec_sha256=SPEC.sha256, backend="kinematic", started_at="t", finished_at="t", duration_s=1.0)


def both(root: Path, index: Path, spec: str = "lm20", policies: list[str] | None = None,
         **options) -> tuple[dict, dict]:
    with_index = make_report(root, spec, policies, index_path=index, **options)
    plain = make_report(root, spec, policies, **options)
    for report in (with_index, plain):
        report.pop("generated_at")
    return with_index, plain


def mutate(root: Path, rng: random.Random) -> str:
    files = sorted(root.rglob("episode_*.json"))
    choice = rng.choice(["add", "add_dir", "delete", "rewrite", "corrupt", "drop_task", "drop_setting", "add_policy",
                         "drop_policy", "misplaced", "duplicate", "nested", "videos"])
    policy = rng.choice(sorted(p.name for p in root.iterdir()))
    if choice in ("add", "add_dir"):
        tasks = TASKS if choice == "add" else list(SPEC.tasks[4:8])
        for _ in range(rng.randint(1, 4)):
            write_record(root, record(policy, rng.choice(SETTINGS), rng.choice(tasks), rng.randrange(20), rng))
    elif choice == "delete" and files:
        rng.choice(files).unlink()
    elif choice == "rewrite" and files:
        target = rng.choice(files)
        data = json.loads(target.read_text())
        if isinstance(data, dict) and "success" in data:
            data.update(success=not data["success"], error=None)
            write_bytes_atomic(target, json.dumps(data).encode())  # replaced by rename, as every writer does
    elif choice == "corrupt" and files:
        write_bytes_atomic(rng.choice(files), b'{"success": tr')
    elif choice == "drop_task" and files:
        shutil.rmtree(rng.choice(files).parent)
    elif choice == "drop_setting" and files:
        shutil.rmtree(rng.choice(files).parent.parent)
    elif choice == "add_policy":
        name = f"P{rng.randrange(100)}"
        for _ in range(rng.randint(1, 6)):
            write_record(root, record(name, rng.choice(SETTINGS), rng.choice(TASKS), rng.randrange(20), rng))
    elif choice == "drop_policy" and len(list(root.iterdir())) > 2:
        shutil.rmtree(root / policy)
    elif choice == "misplaced":
        other = record("Elsewhere", rng.choice(SETTINGS), rng.choice(TASKS), rng.randrange(20), rng)
        write_bytes_atomic(root / policy / other["setting_id"] / other["task"] / "episode_19.json",
                           json.dumps(other).encode())
    elif choice == "duplicate" and files:
        source = rng.choice(files)
        write_bytes_atomic(source.with_name("episode_29.json"), source.read_bytes())  # same fields, another name
    elif choice == "nested":
        deep = root / policy / rng.choice(SETTINGS) / rng.choice(TASKS) / "retry"
        deep.mkdir(parents=True, exist_ok=True)
        (deep / "episode_2.json").write_bytes(json.dumps(record(policy, SETTINGS[0], TASKS[0], 2, rng)).encode())
    elif choice == "videos":
        videos = root / policy / SETTINGS[0] / "videos"
        videos.mkdir(parents=True, exist_ok=True)
        (videos / "episode_0.json").write_text("not a record")
    return choice


def test_index_equals_the_plain_scan_through_many_random_changes(tmp_path, quick_settle):
    rng = random.Random(7)
    root, index = tmp_path / "results", tmp_path / ".rtbench" / "index.sqlite"
    for policy in ("A", "B"):
        for setting in SETTINGS:
            for task in TASKS:
                for repeat in rng.sample(range(20), 3):
                    write_record(root, record(policy, setting, task, repeat, rng))
    variants = [{}, {"policies": ["A"]}, {"spec_slice": SpecSlice(max_repeat=3)}, {"include_all_tasks": True},
                {"spec": "verified"}, {"policies": ["A", "B"], "spec_slice": SpecSlice(max_repeat=25)},
                {"spec_slice": SpecSlice(settings=tuple(SETTINGS[:2]), tasks=tuple(TASKS[1:]))}]
    seen = set()
    for step in range(40):
        time.sleep(SETTLE_S * 1.5)
        for options in [variants[step % len(variants)], {}]:
            options = dict(options)
            if "policies" in options:  # a policy named without a folder is an error (test_report.py)
                options["policies"] = [p for p in options["policies"] if (root / p).is_dir()] or None
            with_index, plain = both(root, index, options.pop("spec", "lm20"), **options)
            assert with_index == plain, (step, seen, options)
        seen.add(mutate(root, rng))
    assert len(seen) >= 10  # most kinds of change happened


def test_a_directory_changed_within_the_settle_time_is_looked_at_again(tmp_path):
    """Changes in the same clock tick as a report leave no trace in mtimes: the folders written
    in the last two seconds are stored as unsettled and listed again, so even an in-place
    rewrite right after a report is found."""
    rng = random.Random(3)
    root, index = tmp_path / "results", tmp_path / "index.sqlite"
    path = write_record(root, record("A", SETTINGS[0], TASKS[0], 0, rng))
    first, _ = both(root, index)
    data = json.loads(path.read_text())
    data.update(success=not data["success"], error=None)
    path.write_text(json.dumps(data))  # in place: the folder's mtime does not move
    second, plain = both(root, index)
    assert second == plain and second != first


def test_rescan_finds_in_place_rewrites_in_settled_folders(tmp_path, quick_settle):
    rng = random.Random(4)
    root, index = tmp_path / "results", tmp_path / "index.sqlite"
    path = write_record(root, record("A", SETTINGS[0], TASKS[0], 0, rng))
    time.sleep(SETTLE_S * 2)
    both(root, index)
    path.write_text("{in place")
    with_index = make_report(root, "lm20", None, index_path=index, rescan=True)
    assert with_index["io_errors"]["json_decode_error"] == 1


@pytest.mark.parametrize("damage", ["not a database", "pages overwritten"])
def test_a_damaged_index_is_rebuilt_with_a_warning(tmp_path, caplog, damage):
    rng = random.Random(5)
    root, index = tmp_path / "results", tmp_path / "index.sqlite"
    for setting in SETTINGS:
        write_record(root, record("A", setting, TASKS[0], 0, rng))
    if damage == "not a database":
        index.write_bytes(b"this is not an sqlite database" * 100)
    else:
        both(root, index)
        data = bytearray(index.read_bytes())
        data[4096:] = b"\xff" * (len(data) - 4096)  # every page but the header's
        index.write_bytes(bytes(data))
    caplog.clear()
    with_index, plain = both(root, index)
    assert with_index == plain
    assert any(r.levelname == "WARNING" and "unreadable" in r.getMessage() and "rebuilding" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("settings_per_policy", [1, 5])  # read in this process, and in forked ones
def test_a_failing_reader_is_an_error_with_its_traceback(tmp_path, monkeypatch, settings_per_policy):
    rng = random.Random(6)
    root = tmp_path / "results"
    for setting in SETTINGS[:settings_per_policy]:
        write_record(root, record("A", setting, TASKS[0], 0, rng))

    def broken(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(reporting.scan, "read_entry", broken)
    with pytest.raises((RuntimeError, OSError), match="disk on fire"):
        make_report(root, "lm20", None)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".") and p != ".rtbench"]  # nothing half-written
    assert sorted(os.listdir(tmp_path / ".rtbench")) == [".gitignore", "sync-journal"]  # the writers' journal only


def test_a_busy_index_is_waited_for_then_named_never_rebuilt(tmp_path, monkeypatch):
    import sqlite3

    import reporting.index
    from reporting.errors import ReportError

    rng = random.Random(8)
    root, index = tmp_path / "results", tmp_path / "index.sqlite"
    write_record(root, record("A", SETTINGS[0], TASKS[0], 0, rng))
    make_report(root, "lm20", None, index_path=index)
    monkeypatch.setattr(reporting.index, "LOCK_WAIT_S", 0.3)
    other = sqlite3.connect(index)
    other.execute("BEGIN IMMEDIATE")  # another report, mid-update
    write_record(root, record("A", SETTINGS[0], TASKS[0], 1, rng))
    try:
        with pytest.raises(ReportError, match="another rtbench-report is updating it"):
            make_report(root, "lm20", None, index_path=index)
    finally:
        other.rollback()
        other.close()
    with_index, plain = both(root, index)  # the index survived, and catches up
    assert with_index == plain and with_index["per_policy"]["A"]["overall"]["completed"] == 2


def test_a_second_report_waits_for_the_first(tmp_path):
    import sqlite3
    import threading

    rng = random.Random(9)
    root, index = tmp_path / "results", tmp_path / "index.sqlite"
    write_record(root, record("A", SETTINGS[0], TASKS[0], 0, rng))
    make_report(root, "lm20", None, index_path=index)
    holding, release = threading.Event(), threading.Event()

    def first_report() -> None:
        other = sqlite3.connect(index, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        holding.set()
        release.wait(5)
        other.execute("ROLLBACK")
        other.close()

    thread = threading.Thread(target=first_report)
    thread.start()
    holding.wait(5)
    threading.Timer(0.5, release.set).start()
    start = time.monotonic()
    report = make_report(root, "lm20", None, index_path=index)
    thread.join()
    assert time.monotonic() - start >= 0.4 and report["per_policy"]["A"]["overall"]["completed"] == 1


def test_the_index_follows_a_git_pull(tmp_path, quick_settle):
    """Results copied around with git (a bare repository as the remote): a pull replaces files
    by unlinking and creating them, which the index sees in their folders' mtimes."""
    import subprocess

    def git(cwd: Path, *args: str) -> None:
        subprocess.run(["git", "-c", "user.name=rtbench", "-c", "user.email=rtbench@example.invalid", *args],
                       cwd=cwd, check=True, capture_output=True)

    rng = random.Random(10)
    git(tmp_path, "init", "--bare", "-b", "main", "remote.git")
    for clone in ("here", "there"):
        git(tmp_path, "clone", "remote.git", clone)
    here, there = tmp_path / "here", tmp_path / "there"
    for setting in SETTINGS:
        write_record(there / "results", record("A", setting, TASKS[0], 0, rng))
    git(there, "add", "-A")
    git(there, "commit", "-m", "first results")
    git(there, "push", "origin", "HEAD:main")
    git(here, "pull", "origin", "main")
    time.sleep(SETTLE_S * 2)  # settled: from now on the index trusts folders whose mtime stays
    index = here / ".rtbench" / "report-index.sqlite"
    first, plain = both(here / "results", index)
    assert first == plain and first["per_policy"]["A"]["overall"]["completed"] == len(SETTINGS)
    time.sleep(SETTLE_S * 2)
    files = sorted((there / "results").rglob("episode_*.json"))
    data = json.loads(files[0].read_text())
    data.update(success=not data["success"], error=None)
    files[0].write_text(json.dumps(data))  # edited in place over there: git carries it as a new file here
    files[1].unlink()
    write_record(there / "results", record("A", SETTINGS[0], TASKS[1], 3, rng))
    git(there, "add", "-A")
    git(there, "commit", "-m", "more results")
    git(there, "push", "origin", "HEAD:main")
    git(here, "pull", "origin", "main")
    second, plain = both(here / "results", index)
    assert second == plain and second != first


def test_tables_of_an_older_index_layout_are_dropped(tmp_path):
    import sqlite3

    rng = random.Random(11)
    root, index = tmp_path / "results", tmp_path / "index.sqlite"
    write_record(root, record("A", SETTINGS[0], TASKS[0], 0, rng))
    with sqlite3.connect(index) as old:
        old.execute("CREATE TABLE record_files_v1 (path TEXT PRIMARY KEY, size INTEGER)")
        old.execute("INSERT INTO record_files_v1 VALUES ('x', 1)")
    with_index, plain = both(root, index)
    assert with_index == plain
    with sqlite3.connect(index) as db:
        names = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "record_files_v1" not in names and f"directories_v{SCHEMA}" in names


WARM_IMPORTS = """
import sys
from reporting.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    assert not exit.code, exit.code
heavy = ("sqlalchemy", "numpy", "reporting.aggregate", "reporting.index", "reporting.render.html")
print(" ".join(name for name in heavy if name in sys.modules) or "none")
"""


def test_a_report_where_nothing_changed_imports_neither_the_index_nor_numpy(tmp_path):
    """The warm path (issue 25, point 9) reads the cached report with the standard library;
    a change, or --rescan, takes the full path again."""
    import subprocess
    import sys

    rng = random.Random(5)
    root = tmp_path / "results"
    for repeat in range(3):
        write_record(root, record("A", SETTINGS[0], TASKS[0], repeat, rng))
    args = ["--results-dir", str(root), "--spec", "lm20", "--quiet"]

    def imported(*extra: str) -> str:
        return subprocess.run([sys.executable, "-c", WARM_IMPORTS, *args, *extra], capture_output=True, text=True,
                              check=True, timeout=120).stdout.strip()

    assert "sqlalchemy" in imported()  # the first report builds the index
    time.sleep(2.5)  # past the settle time: the folders are trusted from now on
    assert "sqlalchemy" in imported()  # settles the folders written within the settle time
    assert imported() == "none"
    assert "sqlalchemy" in imported("--rescan")
    write_record(root, record("A", SETTINGS[0], TASKS[0], 5, rng))
    assert "sqlalchemy" in imported()
