"""The robotwin backend and RoboTwin's deploy policies through real workers and a real Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.contract.fake_robotwin import build_fake_robotwin
from tests.integration.queue_support import dead_letters, done_count, records, wait_for

SLICE = ("--settings", "bias_lm_always_on,scale_lm_always_on", "--tasks", "click_bell,open_laptop",
         "--max-repeat", "2")
SEEDS = {"click_bell": 54737, "open_laptop": 11471}


# A qpos policy in today's style (one-argument load), for scenes that have no kinematic target.
HOLD_STILL = """
class HoldStill:
    name = "hold_still"
    action_type = "qpos"

    def load(self, config):
        pass

    def reset(self, task_env, instruction):
        pass

    def step(self, task_env, observation):
        task_env.take_action(observation["joint_action"]["vector"], action_type="qpos")
"""


@pytest.fixture
def checkout(tmp_path: Path, queue_env: dict[str, str]) -> dict[str, str]:
    """The worker environment for the fake checkout, and a policies file naming its deploy policy."""
    root = tmp_path / "RoboTwin"
    site = build_fake_robotwin(root)
    (tmp_path / "fake_dp.yml").write_text("robotwin_root: ${ROBOTWIN}\npolicy_name: FakeDP\nchunk: 3\n")
    (tmp_path / "hold_still.py").write_text(HOLD_STILL)
    (tmp_path / "policies.yml").write_text(textwrap.dedent("""\
        policies:
          FakeDP:
            adapter: robotwin_deploy
            config: fake_dp.yml
          HoldStill:
            adapter: hold_still:HoldStill
        """))
    return {"RTBENCH_BACKEND": "robotwin", "RTBENCH_ROBOTWIN_ROOT": str(root), "ROBOTWIN": str(root),
            "RTBENCH_POLICIES_FILE": str(tmp_path / "policies.yml"), "RTBENCH_SKIP_EXPERT_CHECK": "0",
            "RTBENCH_DEVICE": "cpu", "PYTHONPATH": os.pathsep.join([str(site), queue_env["PYTHONPATH"]])}


def test_episodes_run_end_to_end_on_robotwin_with_its_failure_modes(workers, producer, broker, tmp_path, checkout):
    env = {**checkout, "FAKE_ROBOTWIN_UNSTABLE": str(SEEDS["open_laptop"])}
    worker = workers(env=env)
    assert "render self-test passed" in worker.log_text()
    sent = producer("enqueue", "lm20", "--policy", "HoldStill", "--policy", "FakeDP", *SLICE)
    assert sent.returncode == 0 and "enqueued 16" in sent.stdout, sent.stderr
    wait_for(lambda: done_count(broker) == 16, 180, "16 episodes")
    written = records(tmp_path / "results")
    assert len(written) == 16 and dead_letters(broker) == []
    for record in written.values():
        assert record["backend"] == "robotwin"
        if record["task"] == "open_laptop":  # its scene is unstable: recorded as such, not the policy's failure
            assert record["error"] == "unstable_seed" and record["steps"] == 0
        else:
            assert record["error"] is None and record["steps"] > 0, record["error"]
            assert "the left arm" in record["instruction"] and "bell" in record["instruction"]
            assert record["instruction_type"] == "seen"
    # The deploy policy's model was built once for its task, from the checkout, with its usr_args.
    usr_args = json.loads((Path(checkout["RTBENCH_ROBOTWIN_ROOT"]) / "policy/FakeDP/checkpoints/click_bell.json")
                          .read_text())
    assert usr_args["task_name"] == "click_bell" and usr_args["chunk"] == 3 and usr_args["device"] == "cpu"
    assert usr_args["ckpt_setting"] == "demo_clean" and usr_args["left_arm_dim"] == 6


def test_a_failed_expert_is_recorded(workers, producer, broker, tmp_path, checkout):
    workers(env={**checkout, "FAKE_ROBOTWIN_EXPERT_FAILS": str(SEEDS["click_bell"])})
    producer("enqueue", "lm20", "--policy", "HoldStill", "--settings", "bias_lm_always_on", "--tasks", "click_bell",
             "--max-repeat", "1")
    wait_for(lambda: done_count(broker) == 1, 120, "the episode")
    (record,) = records(tmp_path / "results").values()
    assert record["error"] == "expert_failed"


@pytest.mark.parametrize(("change", "words"), [
    ({"RTBENCH_ROBOTWIN_ROOT": "/nonexistent/RoboTwin"}, "not a RoboTwin 2.0 checkout of the classic layout"),
    ({"FAKE_SAPIEN_NO_DEVICE": "1"}, "render self-test failed on GPU"),
])
def test_a_machine_that_cannot_run_robotwin_stops_at_start_and_takes_nothing(producer, broker, queue_env, checkout,
                                                                              change, words):
    producer("enqueue", "lm20", "--policy", "HoldStill", "--settings", "bias_lm_always_on", "--tasks", "click_bell",
             "--max-repeat", "2", "--allow-unknown-policy")
    queued = broker.llen("episodes")
    assert queued == 2
    started = subprocess.run([sys.executable, "-m", "worker"], capture_output=True, text=True, timeout=120,
                             env={**os.environ, **queue_env, **checkout, **change})
    assert started.returncode == 2 and words in started.stderr, started.stderr[-2000:]
    assert broker.llen("episodes") == queued and dead_letters(broker) == []  # every message still queued


def test_enqueue_and_report_import_nothing_of_robotwin(tmp_path, checkout, queue_env):
    for command in (["-m", "producer", "enqueue", "lm20", "--policy", "Motus", "--dry-run",
                     "--allow-unknown-policy"],
                    ["-m", "reporting.cli", "--spec", "lm20", "--results-dir", str(tmp_path / "none")]):
        ran = subprocess.run([sys.executable, "-X", "importtime", *command], capture_output=True, text=True,
                             timeout=120, env={**os.environ, **queue_env, **checkout})
        imported = {line.split("|")[-1].strip() for line in ran.stderr.splitlines() if "import time:" in line}
        assert not {"envs", "sapien", "benchmark.backends.robotwin", "torch"} & imported, command
    dry = subprocess.run([sys.executable, "-m", "producer", "enqueue", "lm20", "--policy", "Motus", "--dry-run",
                          "--allow-unknown-policy"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, **queue_env})  # no checkout named at all
    assert dry.returncode == 0 and "lm20: would enqueue" in dry.stdout, dry.stdout + dry.stderr


def test_a_seed_that_crashes_the_planner_is_retried_then_recorded_for_good(workers, producer, broker, tmp_path,
                                                                           checkout):
    """Today's evaluation records it (expert_check_error); rerunning it on every resume would
    never settle. It is retried on other deliveries first: it may have been the machine."""
    workers(env={**checkout, "FAKE_ROBOTWIN_PLANNER_CRASH": str(SEEDS["click_bell"]), "RTBENCH_MAX_ATTEMPTS": "2"})
    one = ("lm20", "--policy", "HoldStill", "--settings", "bias_lm_always_on", "--tasks", "click_bell",
           "--max-repeat", "1")
    producer("enqueue", *one)
    wait_for(lambda: done_count(broker) == 1, 120, "the episode")
    (record,) = records(tmp_path / "results").values()
    assert record["error"].startswith("expert_check_error: planner_error: RuntimeError: trajectory optimisation")
    assert record["error_type"] == "expert_check_error" and record["attempt"] == 2
    assert record["retried"] == {"label": "planner_error", "attempts": 2,
                                 "detail": "RuntimeError: trajectory optimisation failed"}
    again = producer("enqueue", *one)  # a resume: recorded, so not sent again
    assert again.returncode == 0 and "enqueued 0" in again.stdout, again.stdout + again.stderr


def test_stable_seeds_picked_by_the_fleet_are_the_one_machine_seeds(workers, producer, broker, tmp_path, checkout):
    """``producer seeds`` on two workers, then the merge: byte for byte the one-machine file."""
    clean = tmp_path / "clean"
    for task, numbers in {"click_bell": [4, 8, 15, 16], "open_laptop": [23, 42]}.items():
        (clean / task / "qpos").mkdir(parents=True)
        for number in numbers:
            (clean / task / "qpos" / f"{number}.pt").write_bytes(b"")
    env = {**checkout, "RTBENCH_QUEUES": "verify", "FAKE_ROBOTWIN_EXPERT_FAILS": "4,8,23",
           "FAKE_ROBOTWIN_UNSTABLE": "42"}
    tasks = ("--tasks", "click_bell,open_laptop", "--dataset-root", str(clean))
    for _ in range(2):
        workers(env=env)
    sent = producer("seeds", *tasks, "--backend", "robotwin")
    assert sent.returncode == 0 and "enqueued 2 seed picks" in sent.stdout, sent.stdout + sent.stderr
    folder = sent.stdout.split("--merge ", 1)[1].split()[0]
    wait_for(lambda: len(list((tmp_path / "results" / ".seeds").glob("*/*.json"))) == 2, 120, "two picks")
    merged, alone = tmp_path / "fleet.json", tmp_path / "alone.json"
    run_env = {**os.environ, **checkout, "FAKE_ROBOTWIN_EXPERT_FAILS": "4,8,23", "FAKE_ROBOTWIN_UNSTABLE": "42"}
    for args in (["--merge", folder, "--output", str(merged)],
                 [*tasks, "--backend", "robotwin", "--output", str(alone)]):
        done = subprocess.run([sys.executable, "-m", "benchmark.verify.seeds", *args], cwd=tmp_path, env=run_env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert merged.read_bytes() == alone.read_bytes()
    seeds = json.loads(merged.read_text())
    assert seeds["open_laptop"] == 23 and seeds["_provenance"]["picks"]["open_laptop"]["check"] == "relaxed"
    again = producer("seeds", *tasks, "--backend", "robotwin")  # resumes: nothing left to pick
    assert "enqueued 0 seed picks" in again.stdout and "2 picked already" in again.stdout, again.stdout
    assert dead_letters(broker) == []


def test_a_task_without_a_stable_seed_is_a_dead_letter_that_says_so(workers, producer, broker, tmp_path, checkout):
    clean = tmp_path / "clean"
    (clean / "click_bell" / "qpos").mkdir(parents=True)
    for number in (3, 5):
        (clean / "click_bell" / "qpos" / f"{number}.pt").write_bytes(b"")
    workers(env={**checkout, "RTBENCH_QUEUES": "verify", "FAKE_ROBOTWIN_UNSTABLE": "3,5"})
    sent = producer("seeds", "--tasks", "click_bell", "--dataset-root", str(clean), "--backend", "robotwin")
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: dead_letters(broker), 60, "the dead letter")
    (letter,) = dead_letters(broker)
    assert letter["reason"] == "no_stable_seed" and "no stable seed among its 2 dataset candidates" in letter["detail"]
    assert not list((tmp_path / "results").glob(".seeds/*/*.json"))
    bad = producer("seeds", "--tasks", "click_bell", "--dataset-root", str(tmp_path / "nowhere"))
    assert bad.returncode != 0 and "nowhere/click_bell/qpos: cannot list it" in bad.stderr, bad.stderr


def test_a_worker_builds_one_robot_and_checks_one_scene_once_and_the_numbers_stay(workers, producer, broker,
                                                                                   tmp_path, checkout):
    """RoboTwin's own evaluation reuses one task object: so does a worker (RTBENCH_ENV_REUSE); the
    expert's verdict of a scene is checked once for the fleet (RTBENCH_EXPERT_CACHE). The same
    episodes with a fresh object for every scene and a check before every episode (today's way)
    have the same outcomes."""
    one_task = ("lm20", "--policy", "FakeDP", "--tasks", "click_bell", "--max-repeat", "2")
    outcomes = {}
    for reuse, cache in (("100", "1"), ("1", "0")):
        builds, rollouts = tmp_path / f"builds-{reuse}.log", tmp_path / f"expert-{reuse}.log"
        results = tmp_path / f"results-{reuse}"
        worker = workers(env={**checkout, "RTBENCH_ENV_REUSE": reuse, "FAKE_ROBOTWIN_BUILD_LOG": str(builds),
                              "RTBENCH_EXPERT_CACHE": cache, "FAKE_ROBOTWIN_EXPERT_LOG": str(rollouts),
                              "RTBENCH_RESULTS_DIR": str(results)})
        sent = producer("enqueue", *one_task, "--results-dir", str(results))
        assert "enqueued 20" in sent.stdout, sent.stdout + sent.stderr
        wait_for(lambda r=results: len(records(r)) == 20, 180, "20 episodes")
        worker.kill_tree()
        broker.flushdb()  # the second round starts from an empty queue and done-set
        written = records(results)
        outcomes[reuse] = {path: (record["success"], record["error"], record["steps"], record["instruction"])
                           for path, record in written.items()}
        checks = sorted(record["expert_check"] for record in written.values())
        built, rolled = builds.read_text().splitlines(), rollouts.read_text().splitlines()
        if reuse == "100":
            assert (len(built), len(rolled), checks) == (1, 1, ["cached"] * 19 + ["run"])
        else:  # a new object for every scene (2 an episode), a check before every episode
            assert (len(built), len(rolled), checks) == (40, 20, ["run"] * 20)
    assert outcomes["100"] == outcomes["1"]
