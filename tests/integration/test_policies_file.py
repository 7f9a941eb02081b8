"""Users' adapters as they are today, named by a policies file, run through real workers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmark.policies.policies_file import PoliciesFile, PoliciesFileError
from tests.integration.queue_support import done_count, records, wait_for

# Written against today's interface: a plain class, one-argument load(config), name and
# action_type as properties, the adapter executes its own actions. Not an rtbench class.
TODAY_ADAPTER = '''
import json
from pathlib import Path


class HoldStillAdapter:
    def __init__(self):
        self.config = None

    @property
    def name(self):
        return "hold_still"

    @property
    def action_type(self):
        return "qpos"

    def load(self, config):
        self.config = config
        Path(config["report_to"]).write_text(json.dumps(config))

    def reset(self, task_env, instruction):
        self.instruction = instruction

    def step(self, task_env, observation):
        joints = observation["joint_action"]["vector"]
        for _ in range(self.config["chunk"]):
            task_env.take_action(joints, action_type="qpos")
'''


@pytest.fixture
def user_checkout(tmp_path: Path) -> Path:
    """A user's evaluation folder: policies/, configs/ and the policies file beside them."""
    root = tmp_path / "eval"
    (root / "policies").mkdir(parents=True)
    (root / "configs").mkdir()
    (root / "policies" / "hold_still_adapter.py").write_text(TODAY_ADAPTER)
    (root / "configs" / "hold_still.yml").write_text(textwrap.dedent("""\
        robotwin_root: ${ROBOTWIN_ROOT}
        checkpoint_path: ${MODELS}/hold_still/ckpt.pt
        device: cuda
        chunk: 4
        report_to: ${REPORT_TO}
        """))
    (root / "policies.yml").write_text(textwrap.dedent("""\
        policies:
          HoldStill:
            adapter: policies.hold_still_adapter:HoldStillAdapter
            config: configs/hold_still.yml
        """))
    return root


def test_a_today_adapter_runs_unchanged_and_gets_its_config_with_the_leased_device(
        workers, producer, broker, tmp_path, user_checkout):
    report = tmp_path / "config-seen.json"
    env = {"RTBENCH_POLICIES_FILE": str(user_checkout / "policies.yml"), "ROBOTWIN_ROOT": "/opt/RoboTwin",
           "MODELS": "/models", "REPORT_TO": str(report), "CUDA_VISIBLE_DEVICES": "0", "RTBENCH_DEVICE": "cpu"}
    workers("--lease-gpus", env=env)
    sent = producer("enqueue", "lm20", "--policy", "HoldStill", "--tasks", "click_bell", "--settings",
                    "bias_lm_always_on", "--max-repeat", "2")
    assert sent.returncode == 0 and "enqueued 2" in sent.stdout, sent.stderr
    wait_for(lambda: done_count(broker) == 2, 120, "both episodes")
    written = records(tmp_path / "results")
    assert {r["policy"] for r in written.values()} == {"HoldStill"}
    assert all(r["error"] is None and r["steps"] > 0 for r in written.values())
    assert {r["worker"]["hostname"] for r in written.values()} == {"gpu0@testbox"}
    seen = json.loads(report.read_text())
    assert seen == {"robotwin_root": "/opt/RoboTwin", "checkpoint_path": "/models/hold_still/ckpt.pt",
                    "device": "cpu", "chunk": 4, "report_to": str(report)}  # the leased device, not 'cuda'


@pytest.mark.parametrize(("mutate", "words"), [
    (lambda root: (root / "configs" / "hold_still.yml").unlink(),
     "policy 'HoldStill', key 'config': {root}/configs/hold_still.yml does not exist"),
    (lambda root: (root / "policies.yml").write_text("policies:\n  HoldStill:\n    adapter: [a, b]\n"),
     "policy 'HoldStill', key 'adapter': expected a string"),
    (lambda root: (root / "policies" / "hold_still_adapter.py").write_text("import not_installed_anywhere\n"),
     "policy 'HoldStill', key 'adapter': policies.hold_still_adapter:HoldStillAdapter cannot be imported: "
     "ModuleNotFoundError: No module named 'not_installed_anywhere'"),
    (lambda root: (root / "policies.yml").write_text("policies:\n  HoldStill:\n    adapter: nope\n"),
     "policy 'HoldStill', key 'adapter': 'nope' is neither module:Class nor a known policy"),
    (lambda root: (root / "configs" / "hold_still.yml").write_text("device: [cuda\n"),
     "configs/hold_still.yml: not valid YAML at line"),
])
def test_a_bad_entry_stops_the_worker_at_start_naming_file_policy_and_key(user_checkout, queue_env, mutate, words):
    mutate(user_checkout)
    env = {**queue_env, "RTBENCH_POLICIES_FILE": str(user_checkout / "policies.yml"), "ROBOTWIN_ROOT": "/x",
           "MODELS": "/m", "REPORT_TO": "/dev/null", "RTBENCH_DEVICE": "cpu"}
    started = subprocess.run([sys.executable, "-m", "worker"], capture_output=True, text=True, timeout=120,
                             env={**os.environ, **env})
    assert started.returncode == 2, started.stderr[-2000:]
    assert words.format(root=user_checkout) in started.stderr, started.stderr[-2000:]
    assert "policies.yml" in started.stderr


def test_an_unset_variable_in_a_config_is_named(user_checkout):
    entry = PoliciesFile.load(user_checkout / "policies.yml").entries["HoldStill"]
    with pytest.raises(PoliciesFileError, match=r"key 'robotwin_root' of policy 'HoldStill' uses \$\{ROBOTWIN_ROOT\}, "
                                                r"which is not set"):
        entry.config({"MODELS": "/m", "REPORT_TO": "/r"})


def test_enqueue_warns_when_the_policies_file_lacks_the_policy(producer, user_checkout):
    env_file = str(user_checkout / "policies.yml")
    result = subprocess.run([sys.executable, "-m", "producer", "enqueue", "lm20", "--policy", "Motus",
                             "--tasks", "click_bell", "--max-repeat", "1", "--dry-run"], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "RTBENCH_POLICIES_FILE": env_file,
                                                         "RTBENCH_BROKER_URL": "redis://127.0.0.1:1/0"})
    assert f"RTBENCH_POLICIES_FILE {env_file} has no policy 'Motus' (it lists HoldStill)" in \
        " ".join(result.stderr.split())


def _server_config(root: Path, port: str, shared: bool = False) -> None:
    """HoldStill's config talks to a policy server at localhost:<port> (what it reaches is
    written to ${REPORT_TO}.<slot>, so that the test sees each worker's own values)."""
    (root / "configs" / "hold_still.yml").write_text(textwrap.dedent(f"""\
        host: localhost
        port: "{port}"
        chunk: 4
        report_to: "${{REPORT_TO}}.{{slot}}"
        """) if "slot" in port else textwrap.dedent(f"""\
        host: localhost
        port: {port}
        chunk: 4
        report_to: ${{REPORT_TO}}
        """))
    if shared:
        with (root / "policies.yml").open("a") as policies:
            policies.write("    server_shared: true\n")


def _lease(broker, address: str) -> dict | None:
    held = broker.get(f"rtbench:policy_server:{address}")
    return json.loads(held) if held else None


def test_each_gpu_slot_reaches_its_own_policy_server(workers, producer, broker, tmp_path, user_checkout):
    _server_config(user_checkout, "{8000 + slot}")
    report = tmp_path / "seen.json"
    env = {"RTBENCH_POLICIES_FILE": str(user_checkout / "policies.yml"), "REPORT_TO": str(report),
           "CUDA_VISIBLE_DEVICES": "0", "RTBENCH_SLOTS_PER_GPU": "2", "RTBENCH_DEVICE": "cpu"}
    workers("--lease-gpus", env=env), workers("--lease-gpus", env=env)
    assert {port: _lease(broker, f"localhost@testbox:{port}")["worker"] for port in (8000, 8001)} == \
        {8000: "gpu0.0@testbox", 8001: "gpu0.1@testbox"}
    sent = producer("enqueue", "lm20", "--policy", "HoldStill", "--tasks", "click_bell", "--max-repeat", "2",
                    "--settings", "bias_lm_always_on,scale_lm_always_on")
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: done_count(broker) == 4, 120, "the four episodes")
    seen = {slot: json.loads(path.read_text())["port"]
            for slot in (0, 1) if (path := Path(f"{report}.{slot}")).exists()}
    assert seen and all(port == 8000 + slot for slot, port in seen.items()), seen  # ints, each its own


def test_a_second_worker_on_a_leased_server_stops_at_start_naming_both(
        workers, broker, queue_env, user_checkout):
    _server_config(user_checkout, "8000")
    env = {**queue_env, "RTBENCH_POLICIES_FILE": str(user_checkout / "policies.yml"), "REPORT_TO": "/dev/null",
           "RTBENCH_DEVICE": "cpu", "RTBENCH_SERVER_LEASE_TTL": "10"}
    started, first = time.monotonic(), workers(env=env)
    holder = f"cpu{first.pid}@testbox"
    assert _lease(broker, "localhost@testbox:8000")["worker"] == holder

    def second() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "worker"], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **env})

    refused = second()
    assert refused.returncode == 2, refused.stderr[-2000:]
    lines = [line for line in refused.stderr.splitlines() if "policy server" in line]
    assert len(lines) == 1 and len(lines[0]) <= 80, refused.stderr[-2000:]
    assert re.search(rf"cpu\d+@testbox stops: its policy server is leased by {holder}$", lines[0])
    assert "localhost@testbox:8000 (policy 'HoldStill')" in " ".join(refused.stderr.split())
    assert max(len(line) for line in refused.stderr.splitlines()[-4:]) <= 80

    time.sleep(max(0.0, 12 - (time.monotonic() - started)))  # past the TTL: renewed while it lives
    assert _lease(broker, "localhost@testbox:8000")["worker"] == holder
    first.kill_tree()  # killed outright: its lease lapses after RTBENCH_SERVER_LEASE_TTL
    assert _lease(broker, "localhost@testbox:8000") is not None
    wait_for(lambda: _lease(broker, "localhost@testbox:8000") is None, 20, "the dead worker's lease to lapse")
    third = workers(env=env)
    assert _lease(broker, "localhost@testbox:8000")["worker"] == f"cpu{third.pid}@testbox"
    third.process.terminate()  # a clean stop releases at once
    third.process.wait(60)
    assert _lease(broker, "localhost@testbox:8000") is None


def test_a_shared_server_may_serve_many_workers(workers, broker, user_checkout):
    _server_config(user_checkout, "8000", shared=True)
    env = {"RTBENCH_POLICIES_FILE": str(user_checkout / "policies.yml"), "REPORT_TO": "/dev/null",
           "RTBENCH_DEVICE": "cpu"}
    workers(env=env), workers(env=env)  # both start
    assert _lease(broker, "localhost@testbox:8000") is None
