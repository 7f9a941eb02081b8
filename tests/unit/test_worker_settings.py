"""Worker settings, the Celery configuration, GPU lists and leases, episode messages."""

from __future__ import annotations

import json
import os
import stat
import uuid
from pathlib import Path

import pytest

from worker.app import celery_config
from worker.git_run import use_deploy_key
from worker.gpu import try_lease, visible_gpus
from worker.heartbeat import Heartbeat, check
from worker.queue.messages import TASK_ID_NAMESPACE, MalformedMessage, parse_message, task_id
from worker.settings import Settings, SettingsError, redact_url


def test_defaults_and_derived_timeouts_keep_visibility_above_the_hard_limit():
    settings = Settings.from_env({"RTBENCH_EPISODE_TIMEOUT": "600", "RTBENCH_CLAIM_TTL": "20"})
    assert settings.hard_time_limit_s == 720 and settings.visibility_timeout_s == 1020
    assert settings.defer_delay_s > settings.claim_ttl_s
    config = celery_config(settings)
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1 and config["task_ignore_result"]
    assert config["task_time_limit"] == 720 and config["task_soft_time_limit"] < 720
    for options in (config["broker_transport_options"], config["result_backend_transport_options"]):
        assert options["visibility_timeout"] > config["task_time_limit"]
        # A worker killed during its sweep of unacked messages stalls recovery this long, not 5 minutes.
        assert options["unacked_mutex_expire"] == 3 * options["unacked_restore_interval"] == 30
    assert config["worker_send_task_events"] and config["task_send_sent_event"]


@pytest.mark.parametrize(("env", "words"), [
    ({"RTBENCH_BROKER_URL": "amqp://x"}, "RTBENCH_BROKER_URL='amqp://x': expected a redis://"),
    ({"RTBENCH_MAX_ATTEMPTS": "zero"}, "RTBENCH_MAX_ATTEMPTS='zero': expected an integer"),
    ({"RTBENCH_MAX_ATTEMPTS": "0"}, "RTBENCH_MAX_ATTEMPTS='0': expected at least 1"),
    ({"RTBENCH_EPISODE_TIMEOUT": "soon"}, "RTBENCH_EPISODE_TIMEOUT='soon': expected a number"),
    ({"RTBENCH_DEVICE": "tpu"}, "RTBENCH_DEVICE='tpu': expected cpu, cuda or cuda:N"),
    ({"RTBENCH_SKIP_EXPERT_CHECK": "maybe"}, "RTBENCH_SKIP_EXPERT_CHECK='maybe'"),
    ({"RTBENCH_QUEUES": " , "}, "RTBENCH_QUEUES"),
])
def test_bad_variables_are_named(env, words):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert words in str(caught.value)


def test_passwords_never_show():
    assert redact_url("redis://:hunter2@hub:6379/0") == "redis://:***@hub:6379/0"
    assert redact_url("redis://user:hunter2@hub:6379/0") == "redis://user:***@hub:6379/0"
    assert redact_url("redis://hub:6379/0") == "redis://hub:6379/0"
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"RTBENCH_BROKER_URL": "http://:hunter2@hub"})
    assert "hunter2" not in str(caught.value)
    settings = Settings.from_env({"RTBENCH_BROKER_URL": "redis://:hunter2@hub:6379/0"})
    assert "hunter2" not in str(settings.redacted())


@pytest.mark.parametrize(("env", "gpus"), [
    ({"CUDA_VISIBLE_DEVICES": "0,1"}, ["0", "1"]),
    ({"CUDA_VISIBLE_DEVICES": "3"}, ["3"]),
    ({"CUDA_VISIBLE_DEVICES": ""}, []),
    ({"NVIDIA_VISIBLE_DEVICES": "void"}, []),
    ({"NVIDIA_VISIBLE_DEVICES": "2,5"}, ["2", "5"]),
    ({"NVIDIA_VISIBLE_DEVICES": "all"}, ["0", "1", "2"]),
    ({}, ["0", "1", "2"]),
])
def test_visible_gpus_come_from_the_environment_or_nvidia_smi(env, gpus):
    assert visible_gpus(env, nvidia_smi=lambda: ["0", "1", "2"]) == gpus


def test_leases_are_exclusive_and_freed_on_release(tmp_path):
    first = try_lease(tmp_path, ["0", "1"])
    second = try_lease(tmp_path, ["0", "1"])
    assert (first.gpu, second.gpu) == ("0", "1")
    assert try_lease(tmp_path, ["0", "1"]) is None
    first.release()
    assert try_lease(tmp_path, ["0", "1"]).gpu == "0"


def test_messages_parse_or_say_why():
    message = parse_message((), {"episode_id": "p/s/t/episode_2", "spec": "lm20", "spec_sha256": "ab"})
    assert message.key.repeat_idx == 2 and message.task_id == task_id("ab", "p/s/t/episode_2")
    assert task_id("ab", "p/s/t/episode_2") != task_id("ac", "p/s/t/episode_2")
    assert task_id("ab", "p/s/t/episode_2") == str(uuid.uuid5(TASK_ID_NAMESPACE, "ab/p/s/t/episode_2"))
    traversal = {"episode_id": "../../x", "spec": "a", "spec_sha256": "b"}
    for args, kwargs, reason in [((1,), {}, "malformed_message"), ((), {"spec": "x"}, "malformed_message"),
                                 ((), traversal, "invalid_episode_id")]:
        with pytest.raises(MalformedMessage) as caught:
            parse_message(args, kwargs)
        assert caught.value.reason == reason


def test_fast_envelopes_equal_the_general_ones():
    import json

    from worker.queue.messages import EpisodeMessage
    from worker.queue.publish import MessageBuilder

    builder = MessageBuilder("episodes", priority=3)
    for ref in ("lm20", "/data/specs/my spec's \"v2\".json"):
        message = parse_message((), {"episode_id": "Pi05/fir_lm_always_on/place_a2b_left/episode_17", "spec": ref,
                                     "spec_sha256": "ab" * 32})
        assert isinstance(message, EpisodeMessage)
        fast, general = json.loads(builder.envelope(message)), json.loads(builder.envelope_for(message.kwargs,
                                                                                              message.task_id))
        fast["properties"].pop("delivery_tag"), general["properties"].pop("delivery_tag")
        assert fast == general


def test_to_env_rebuilds_the_same_settings_in_a_child_process(tmp_path):
    from dataclasses import replace

    settings = replace(Settings.from_env({"RTBENCH_BROKER_URL": "redis://:pw@hub:6379/1", "RTBENCH_QUEUES": "a,b",
                                          "RTBENCH_SHUTDOWN_GRACE": "0", "RTBENCH_BLOCKED_PROBE_INTERVAL": "7",
                                          "RTBENCH_SKIP_EXPERT_CHECK": "yes", "RTBENCH_EPISODE_TIMEOUT": "90"}),
                       results_dir=tmp_path / "results", leased_gpu="3")
    rebuilt = Settings.from_env(settings.to_env())
    assert rebuilt == replace(settings, leased_gpu=None)  # the lease belongs to the process that holds it
    assert settings.torch_device == "cuda:0" and rebuilt.torch_device == "cpu"


def test_the_static_runner_and_the_workers_share_run_settings_and_retry_policy():
    from benchmark.run.settings import RunSettings

    env = {"RTBENCH_RESULTS_DIR": "/data/results", "RTBENCH_MAX_ATTEMPTS": "4", "RTBENCH_EPISODE_TIMEOUT": "900"}
    shared, worker = RunSettings.from_env(env), Settings.from_env(env)
    for name in ("results_dir", "machine", "device", "backend", "skip_expert_check", "episode_timeout_s",
                 "max_attempts"):
        assert getattr(shared, name) == getattr(worker, name), name
    assert shared.retry == worker.retry
    assert [shared.retry.delay_s(a) for a in (1, 2, 3, 6, 7)] == [2, 4, 8, 60, 60]
    assert shared.retry.has_attempts_left(3) and not shared.retry.has_attempts_left(4)
    assert RunSettings().episode_timeout_s == Settings().episode_timeout_s == 3600


def test_heartbeat_check_says_fresh_stale_missing_or_unreadable(tmp_path):
    path = tmp_path / "heartbeat"
    healthy, line = check(path, 60)
    assert not healthy and "no heartbeat" in line
    beat = Heartbeat(path, "gpu2@box")
    beat.beat("working")
    healthy, line = check(path, 60)
    assert healthy and line.startswith("ok: gpu2@box working")
    healthy, line = check(path, 60, now=path.stat().st_mtime + 61)
    assert not healthy and line.startswith("stale: gpu2@box working") and "61 s ago" in line
    beat.beat("working")  # within 5 s of the last one: the file is not rewritten
    assert json.loads(path.read_text())["state"] == "working"
    beat.beat("spare, waiting for a GPU")  # a new state is written at once
    assert json.loads(path.read_text())["state"] == "spare, waiting for a GPU"
    path.write_text("{truncated")
    healthy, line = check(path, 60)
    assert not healthy and "unreadable" in line


def test_machine_name_from_the_hosts_hostname_file(tmp_path):
    hostname = tmp_path / "hostname"
    hostname.write_text("gpu-node-17\n")
    assert Settings.from_env({"RTBENCH_MACHINE_FILE": str(hostname)}).machine == "gpu-node-17"
    # RTBENCH_MACHINE wins; an empty one (compose's `${RTBENCH_MACHINE:-}`) falls back to the file.
    assert Settings.from_env({"RTBENCH_MACHINE": "a", "RTBENCH_MACHINE_FILE": str(hostname)}).machine == "a"
    assert Settings.from_env({"RTBENCH_MACHINE": "", "RTBENCH_MACHINE_FILE": str(hostname)}).machine == "gpu-node-17"
    with pytest.raises(SettingsError, match="RTBENCH_MACHINE_FILE=.*cannot read the machine name"):
        Settings.from_env({"RTBENCH_MACHINE_FILE": str(tmp_path / "missing")})
    hostname.write_text("\n")
    with pytest.raises(SettingsError, match="RTBENCH_MACHINE_FILE=.*empty"):
        Settings.from_env({"RTBENCH_MACHINE_FILE": str(hostname)})


def test_deploy_key_is_copied_private_for_ssh(tmp_path, monkeypatch):
    monkeypatch.delenv("GIT_SSH_COMMAND", raising=False)
    key = tmp_path / "deploy_key"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    key.chmod(0o644)  # how a compose secret often arrives; ssh refuses such a key
    use_deploy_key(key)
    command = os.environ["GIT_SSH_COMMAND"]
    copy = Path(command.split("-i ", 1)[1].split()[0])
    assert copy.read_text() == key.read_text() and stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert "BatchMode=yes" in command and "IdentitiesOnly=yes" in command
    with pytest.raises(SettingsError, match="RTBENCH_DEPLOY_KEY_FILE=.*cannot read the deploy key"):
        use_deploy_key(tmp_path / "missing")


def test_policy_server_addresses_compare_without_scheme_and_per_machine_on_loopback():
    from worker.server_leases import lease_address

    assert lease_address("ws://LocalHost:8000/v1", "box") == "localhost@box:8000"
    assert lease_address("127.0.0.2:8000", "box") == lease_address("0.0.0.0:8000", "box") == "localhost@box:8000"
    assert lease_address("[::1]:9000", "box") == "localhost@box:9000"
    assert lease_address("wss://gpu-7.lab:8000", "box") == "gpu-7.lab:8000"
