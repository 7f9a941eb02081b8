"""Policies the fleet knows (issue 25, point 1): workers announce the names they can load,
``producer enqueue`` refuses a name nobody can load, ``status`` names it as unknown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tests.integration.queue_support import wait_for
from worker.queue import keys
from worker.queue.fleet_policies import Announcer

ONE = ["--settings", "bias_lm_always_on", "--tasks", "click_bell", "--max-repeat", "1"]


@pytest.fixture
def hub(tmp_path, queue_env):
    """``python -m producer`` on a machine without the test plugin: it knows only the built-ins."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, **queue_env, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        return subprocess.run([sys.executable, "-m", "producer", *args], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=120)

    return run


def _lines_fit(text: str) -> None:
    assert all(len(line) <= 80 for line in text.splitlines()), text


def test_a_worker_announces_what_it_can_load_and_a_typo_is_refused(workers, producer, broker):
    worker = workers()
    wait_for(lambda: broker.hexists(keys.FLEET_POLICIES, "slow"), 60, "the worker's announcement")
    seen = json.loads(broker.hget(keys.FLEET_POLICIES, "feedback"))
    assert seen["machine"] == "testbox" and seen["worker"].endswith("@testbox")
    assert {"expert_replay", "feedback", "slow", "poison"} <= set(broker.hkeys(keys.FLEET_POLICIES))
    refused = producer("enqueue", "lm20", "--policy", "feedbak", *ONE)
    assert refused.returncode == 2 and refused.stdout == ""
    assert "unknown policy 'feedbak' (did you mean 'feedback'?)" in refused.stderr
    assert "--allow-unknown-policy" in refused.stderr
    _lines_fit(refused.stderr)
    assert broker.llen("episodes") == 0 and worker.process.poll() is None


def test_a_name_only_the_fleet_knows_is_sent(hub, broker):
    refused = hub("enqueue", "lm20", "--policy", "slow", *ONE)
    assert refused.returncode == 2 and "no worker has announced its policies yet" in refused.stderr
    _lines_fit(refused.stderr)
    Announcer(broker, "gpu0@m2", "m2", ["feedback", "slow"]).announce()
    sent = hub("enqueue", "lm20", "--policy", "slow", *ONE)
    assert sent.returncode == 0 and "enqueued 1" in sent.stdout, sent.stderr


def test_an_announcement_older_than_30_days_does_not_count(hub, broker):
    old = json.dumps({"worker": "gpu0@gone", "machine": "gone", "time": time.time() - 31 * 86400})
    broker.hset(keys.FLEET_POLICIES, "slow", old)
    Announcer(broker, "gpu0@m2", "m2", ["feedback"]).announce()
    refused = hub("enqueue", "lm20", "--policy", "slow", *ONE)
    assert refused.returncode == 2
    assert "unknown policy 'slow'" in refused.stderr and "no worker announced it" in refused.stderr


def test_allow_unknown_policy_sends_and_status_names_it_unknown(hub, broker):
    sent = hub("enqueue", "lm20", "--policy", "Motus", "--allow-unknown-policy", *ONE)
    assert sent.returncode == 0 and "enqueued 1" in sent.stdout, sent.stderr
    shown = hub("status", "lm20", "--policy", "Motus")
    assert shown.returncode == 0
    assert "unknown: Motus (no worker announced it" in shown.stdout
    Announcer(broker, "gpu0@m2", "m2", ["Motus"]).announce()
    assert "unknown:" not in hub("status", "lm20", "--policy", "Motus").stdout
