"""Where the episodes' time goes: phases in every record, the same sums in producer status
(from Redis) and in the report (from the records), through real workers."""

from __future__ import annotations

import json
import subprocess
import sys

from benchmark.records.time_use import PHASES, SUMS, TimeUse, episode_sums
from benchmark.spec.spec_file import load_spec
from tests.integration.queue_support import done_count, records, wait_for
from worker.queue import time_sums


def test_phases_reach_status_and_the_report(workers, producer, broker, tmp_path):
    step_sleep = 0.01
    workers(env={"RTBENCH_TEST_STEP_SLEEP": str(step_sleep)})
    sent = producer("enqueue", "lm20", "--policy", "slow", "--policy", "feedback", "--tasks", "click_bell",
                    "--settings", "bias_lm_always_on,scale_lm_always_on", "--max-repeat", "2")
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: done_count(broker) == 8, 120, "the 8 episodes")
    written = list(records(tmp_path / "results").values())
    for record in written:
        phases = record["phases"]
        assert list(phases) == list(PHASES) and all(value >= 0 for value in phases.values())
        # The phases cover the episode's wall time, and no more (write_s comes after it).
        covered = sum(phases.values()) - phases["write_s"]
        assert 0.8 * record["duration_s"] - 0.01 <= covered <= record["duration_s"] + 0.01, record
        if record["policy"] == "slow":  # every step sleeps: the policy's time, not the simulator's
            assert phases["policy_s"] >= step_sleep * record["steps"] / 4, record
            assert phases["policy_s"] > phases["sim_s"]

    # Redis's sums (what status shows) are the records' sums.
    expected: dict[str, TimeUse] = {}
    for record in written:
        expected.setdefault(record["policy"], TimeUse()).add(episode_sums(record))
    wait_for(lambda: sum(use.episodes for use in time_sums.read(broker, load_spec("lm20").sha256).values()) == 8,
             30, "the finisher's sums")
    kept = time_sums.read(broker, load_spec("lm20").sha256)
    assert set(kept) == {("slow", "testbox"), ("feedback", "testbox")}
    for (policy, _machine), use in kept.items():
        for name in SUMS:
            assert abs(use[name] - expected[policy][name]) < 1e-6, (policy, name)
    status = producer("status", "lm20", "--policy", "slow", "--policy", "feedback")
    assert max(map(len, status.stdout.splitlines())) <= 80, status.stdout
    lines = status.stdout.split("time use", 1)[1].splitlines()
    slow = expected["slow"]
    row = next(line for line in lines if line.split()[:1] == ["slow"])
    assert row.split()[1:3] == ["4", f"{slow.share('policy_s'):.0%}"], row
    assert any(line.split()[:2] == ["@testbox", "8"] for line in lines), status.stdout

    out = tmp_path / "report.json"
    report = subprocess.run([sys.executable, "-m", "reporting.cli", "--results-dir", str(tmp_path / "results"),
                             "--spec", "lm20", "--export-json", str(out)], capture_output=True, text=True,
                            timeout=120)
    assert report.returncode == 0, report.stderr
    figures = json.loads(out.read_text())["time_use"]["slow"]
    assert figures["overall"] == figures["machines"]["testbox"] == slow.summary()
    assert "time use" in report.stdout and f"{slow.share('policy_s'):.0%}" in report.stdout
