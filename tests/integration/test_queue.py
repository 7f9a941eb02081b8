"""The job queue end to end: a real Redis server, real Celery worker processes, real files."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.records.episodes import iter_episodes
from benchmark.records.results import new_record, write_record
from benchmark.spec.spec_file import load_spec
from tests.integration.queue_support import (
    counters_agree,
    done_count,
    embedded_run_env,
    message,
    queue_is_drained,
    records,
    wait_for,
)
from worker.app import celery_config
from worker.queue.publish import MessageBuilder, publish
from worker.settings import Settings

SLICE = ["--tasks", "adjust_bottle,click_bell", "--settings", "bias_lm_always_on,scale_lm_always_on,iir_lm_always_on",
         "--max-repeat", "2"]


def test_two_policies_three_workers_complete_exactly_once(producer, workers, broker, tmp_path):
    sent = producer("enqueue", "lm20", "--policy", "feedback", "--policy", "expert_replay", *SLICE)
    assert sent.returncode == 0, sent.stderr
    assert "enqueued 24" in sent.stdout
    for _ in range(3):
        workers()
    wait_for(lambda: done_count(broker) == 24, 120, "24 episodes done")
    wait_for(lambda: queue_is_drained(broker), 30, "the queue to drain")
    written = records(tmp_path / "results")
    assert len(written) == 24
    assert {r["policy"] for r in written.values()} == {"feedback", "expert_replay"}
    assert all(r["attempt"] == 1 and r["worker"]["machine"] == "testbox" for r in written.values())
    assert len({r["worker"]["hostname"] for r in written.values()}) >= 2  # shared between workers
    again = producer("enqueue", "lm20", "--policy", "feedback", "--policy", "expert_replay", *SLICE)
    assert "enqueued 0" in again.stdout and "skipped 24 (done (Redis done-set))" in again.stdout
    assert broker.llen("episodes") == 0
    status = producer("status", "lm20", "--policy", "feedback", "--policy", "expert_replay", *SLICE)
    assert status.returncode == 0 and "100.0%" in status.stdout
    inferred = producer("status", "lm20", *SLICE)  # policies from what Redis knows
    assert "expert_replay" in inferred.stdout and "feedback" in inferred.stdout
    overview = producer("status")
    words = " ".join(overview.stdout.split())
    assert overview.returncode == 0 and "0 waiting, 0 running, 0 dead letters" in words
    assert f"{load_spec('lm20').sha256[:16]} 24 24" in words


def test_records_on_disk_count_as_done_for_enqueue(producer, workers, broker, tmp_path):
    producer("enqueue", "lm20", "--policy", "feedback", "--tasks", "click_bell", "--max-repeat", "1")
    workers()
    wait_for(lambda: done_count(broker) == 10, 60, "10 episodes done")
    broker.flushdb()  # Redis lost everything: the records still say what is done
    again = producer("enqueue", "lm20", "--policy", "feedback", "--tasks", "click_bell", "--max-repeat", "2")
    assert "enqueued 10" in again.stdout and "skipped 10 (record in results dir)" in again.stdout


def test_duplicate_delivery_runs_once(workers, broker, tmp_path, queue_env):
    episode = message("slow/bias_lm_always_on/click_bell/episode_0")
    publish(broker, [episode, episode], queue="episodes")
    env = {"RTBENCH_TEST_STEP_SLEEP": "0.1"}
    first, second = workers(env=env), workers(env=env)
    wait_for(lambda: done_count(broker) == 1, 60, "the episode done")
    # The second delivery was deferred while the first ran; it is acknowledged only later,
    # when it finds the record.
    wait_for(lambda: queue_is_drained(broker), 60, "the deferred copy to be consumed")
    written = records(tmp_path / "results")
    assert list(written) == ["slow/bias_lm_always_on/click_bell/episode_0"]
    assert written["slow/bias_lm_always_on/click_bell/episode_0"]["attempt"] == 1
    logs = first.log_text() + second.log_text()
    assert logs.count("'ran'") == 1 and ": claimed by" in logs and logs.count("'skipped'") == 1


def test_bad_messages_go_to_the_dead_letter_list_and_the_worker_keeps_working(producer, workers, broker, tmp_path):
    sha = load_spec("lm20").sha256
    bad = [
        {"episode_id": "../../x", "spec": "lm20", "spec_sha256": sha},
        {"episode_id": "feedback/bias_lm_always_on/click_bell/episode_0", "spec": "lm20", "spec_sha256": "0" * 64},
        {"episode_id": "Motus/bias_lm_always_on/click_bell/episode_0", "spec": "lm20", "spec_sha256": sha},
        {"episode": 3},
        {"episode_id": "feedback/bias_lm_always_on/click_bell/episode_99", "spec": "lm20", "spec_sha256": sha},
    ]
    builder = MessageBuilder("episodes")
    for index, kwargs in enumerate(bad):
        broker.lpush("episodes", builder.envelope_for(kwargs, f"bad-{index}"))
    publish(broker, [message("feedback/bias_lm_always_on/click_bell/episode_1")], queue="episodes")
    worker = workers()
    wait_for(lambda: done_count(broker) == 1, 60, "the good episode done")
    dead = [json.loads(x) for x in broker.lrange("rtbench:dead", 0, -1)]
    assert [d["reason"] for d in dead] == ["invalid_episode_id", "spec_mismatch", "unknown_policy",
                                           "malformed_message", "not_in_spec"]
    assert "'Motus'" in dead[2]["detail"] and "known policies" in dead[2]["detail"]
    assert worker.process.poll() is None
    assert not (tmp_path / "x.json").exists() and list(records(tmp_path / "results")) == [
        "feedback/bias_lm_always_on/click_bell/episode_1"]
    shown = producer("dead")
    assert shown.returncode == 0 and "spec_mismatch" in shown.stdout
    purged = producer("dead", "--purge")
    assert "purged 5" in purged.stdout and broker.llen("rtbench:dead") == 0


def test_requeued_dead_letters_are_published_like_enqueue_and_never_sent_twice(producer, workers, broker):
    args = ["lm20", "--policy", "Motus", "--settings", "bias_lm_always_on", "--tasks", "click_bell",
            "--max-repeat", "1", "--allow-unknown-policy"]
    assert "enqueued 1" in producer("enqueue", *args).stdout
    worker = workers()  # Motus is not installed here: a dead letter
    wait_for(lambda: broker.llen("rtbench:dead") == 1, 60, "the dead letter")
    worker.kill_tree()
    requeued = producer("dead", "--requeue")
    assert requeued.returncode == 0 and "re-published 1 messages" in requeued.stdout
    episode = message("Motus/bias_lm_always_on/click_bell/episode_0")
    assert [json.loads(raw)["headers"]["id"] for raw in broker.lrange("episodes", 0, -1)] == [episode.task_id]
    again = producer("enqueue", *args, "--requeue-stale", "--stale-after", "0")
    assert "enqueued 0" in again.stdout and broker.llen("episodes") == 1  # recognised: not sent a second time


def test_killed_pool_child_is_rerun_elsewhere_and_written_once(workers, broker, tmp_path, producer):
    episode = message("slow/bias_lm_always_on/click_bell/episode_0")
    env = {"RTBENCH_TEST_STEP_SLEEP": "0.2"}
    victim = workers(env=env)
    publish(broker, [episode], queue="episodes")
    wait_for(lambda: broker.exists(f"rtbench:claim:{episode.key.id}"), 30, "the episode to start")
    workers(env=env)
    os.kill(victim.pool_child(), signal.SIGKILL)
    wait_for(lambda: done_count(broker) == 1, 90, "the episode to be re-run")
    written = records(tmp_path / "results")
    assert list(written) == [episode.key.id] and written[episode.key.id]["attempt"] == 2
    leftovers = [p for p in (tmp_path / "results").rglob("*") if p.is_file() and not p.name.startswith("episode_")]
    assert leftovers == []
    counters_agree(producer, "slow")


def test_poison_episode_becomes_worker_lost_and_others_complete(workers, broker, tmp_path, producer):
    poison = message("poison/bias_lm_always_on/click_bell/episode_0")
    fine = message("poison/bias_lm_always_on/adjust_bottle/episode_0")
    publish(broker, [poison, fine], queue="episodes")
    workers(env={"RTBENCH_MAX_ATTEMPTS": "2", "RTBENCH_CLAIM_TTL": "1"})
    wait_for(lambda: len(records(tmp_path / "results")) == 2, 120, "both episodes to end")
    wait_for(lambda: queue_is_drained(broker), 30, "the queue to drain")
    written = records(tmp_path / "results")
    assert written[fine.key.id]["error"] is None
    lost = written[poison.key.id]
    assert lost["error_type"] == "worker_lost" and lost["success"] is False
    assert lost["error"].startswith("worker_lost: its worker died while running it (2 attempts)")
    # An infrastructure-error record is not done: the done-set does not hide it from enqueue.
    # The mark follows the record's fsync, in the pool child's background thread, and the
    # poison kills that child: when it dies between the fine record and its mark, the record
    # (the truth) is on disk and the next enqueue repairs the done-set from it.
    done_set = f"rtbench:done:{load_spec('lm20').sha256}"
    try:
        wait_for(lambda: broker.smembers(done_set) == {fine.key.id}, 15, "the fine episode's mark")
    except AssertionError:
        assert broker.smembers(done_set) == set()
        repair = producer("enqueue", "lm20", "--policy", "poison", "--settings", "bias_lm_always_on",
                          "--tasks", "adjust_bottle", "--max-repeat", "1")
        assert repair.returncode == 0, repair.stderr
        assert broker.smembers(done_set) == {fine.key.id}
    counters_agree(producer, "poison")


@pytest.mark.parametrize("holding_the_sweep_lock", [False, True])
def test_killed_worker_is_recovered_after_the_visibility_timeout(holding_the_sweep_lock, workers, broker, tmp_path,
                                                                  queue_env):
    short = {"RTBENCH_EPISODE_TIMEOUT": "4", "RTBENCH_HARD_TIMEOUT_MARGIN": "2", "RTBENCH_VISIBILITY_MARGIN": "2",
             "RTBENCH_TEST_STEP_SLEEP": "0.3"}  # visibility timeout 8 s
    episode = message("slow/bias_lm_always_on/adjust_bottle/episode_0")
    victim = workers(env=short)
    publish(broker, [episode], queue="episodes")
    wait_for(lambda: broker.exists(f"rtbench:claim:{episode.key.id}"), 30, "the episode to start")
    victim.kill_tree()  # the whole worker: nobody is left to requeue the message
    assert broker.hlen("unacked") == 1
    if holding_the_sweep_lock:
        # Killed in the middle of its own sweep of unacked messages: the lock it held stays
        # behind for as long as it was taken for (kombu's default: 5 minutes without a sweep).
        expire = celery_config(Settings.from_env({**queue_env, **short}))["broker_transport_options"]
        assert broker.set("unacked_mutex", "held-by-the-killed-worker", nx=True, ex=expire["unacked_mutex_expire"])
    workers(env={**short, "RTBENCH_TEST_STEP_SLEEP": "0.01"})
    wait_for(lambda: done_count(broker) == 1, 90, "the episode to be recovered")
    assert list(records(tmp_path / "results")) == [episode.key.id]


def test_sigterm_gives_the_running_episode_back_at_once(workers, broker, tmp_path):
    """docker stop: SIGTERM, a grace window, then SIGKILL. The episode in flight must come back
    within seconds, not after the visibility timeout (here 10 minutes)."""
    import time

    long = {"RTBENCH_TEST_STEP_SLEEP": "0.3", "RTBENCH_EPISODE_TIMEOUT": "600", "RTBENCH_SHUTDOWN_GRACE": "1",
            "RTBENCH_CLAIM_TTL": "60"}  # a ~2 minute episode; a claim that would defer others 90 s
    episodes = [message(f"slow/bias_lm_always_on/adjust_bottle/episode_{i}") for i in range(2)]
    busy = workers(env=long)
    publish(broker, episodes, queue="episodes")
    wait_for(lambda: broker.exists(f"rtbench:claim:{episodes[0].key.id}"), 30, "the first episode to start")
    stopped_at = time.monotonic()
    busy.process.send_signal(signal.SIGTERM)
    busy.process.wait(30)
    assert time.monotonic() - stopped_at < 15, "SIGTERM waited for the episode"
    assert not broker.exists(f"rtbench:claim:{episodes[0].key.id}")  # given back, not left to expire
    assert broker.llen("episodes") + broker.hlen("unacked") == 2
    other = workers(env={**long, "RTBENCH_TEST_STEP_SLEEP": "0.01"})
    wait_for(lambda: done_count(broker) == 2, 90, "both episodes done on the other worker")
    assert time.monotonic() - stopped_at < 120  # the visibility timeout is 610 s
    written = records(tmp_path / "results")
    assert sorted(written) == sorted(e.key.id for e in episodes)
    assert [r["attempt"] for r in written.values()] == [1, 1]  # a shutdown is not the episode's attempt
    assert "'ran'" in other.log_text() and "'ran'" not in busy.log_text()


def test_redis_restart_with_aof_loses_nothing(tmp_path, queue_env, producer, workers):
    import redis as redis_client

    from producer.embedded import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "own-redis", appendonly=True).start()
    env = {"RTBENCH_BROKER_URL": server.url, "RTBENCH_TEST_STEP_SLEEP": "0.02"}
    queue_env.update(env)
    try:
        client = redis_client.Redis.from_url(server.url, decode_responses=True)
        sent = producer("enqueue", "lm20", "--policy", "slow", "--tasks", "click_bell", "--max-repeat", "3")
        assert "enqueued 30" in sent.stdout
        workers(env=env)
        wait_for(lambda: done_count(client) >= 3, 60, "some episodes done")
        server.stop()  # SIGTERM: the AOF is flushed
        server.start()
        client = redis_client.Redis.from_url(server.url, decode_responses=True)
        assert client.llen("episodes") + client.hlen("unacked") > 0  # queued work survived
        again = producer("enqueue", "lm20", "--policy", "slow", "--tasks", "click_bell", "--max-repeat", "3")
        assert again.returncode == 0, again.stderr
        wait_for(lambda: done_count(client) == 30, 120, "all 30 done after the restart")
        wait_for(lambda: queue_is_drained(client), 60, "the queue to drain")
        written = records(tmp_path / "results")
        assert len(written) == 30 and all(r["attempt"] <= 2 for r in written.values())
        counters_agree(producer, "slow")  # what status reads equals the sets, restart and all
        status = producer("status", "lm20", "--policy", "slow")
        assert "30/10,000" in status.stdout, status.stdout
    finally:
        server.stop()


def test_gpu_leases_are_distinct_and_a_spare_takes_over(workers, broker, tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "0,1", "RTBENCH_DEVICE": "cpu"}
    beats = [tmp_path / f"heartbeat-{i}" for i in range(3)]  # each one's health check reads its own
    first = workers("--lease-gpus", env={**env, "RTBENCH_HEARTBEAT_FILE": str(beats[0])})
    second = workers("--lease-gpus", env={**env, "RTBENCH_HEARTBEAT_FILE": str(beats[1])})
    names = {w.pid: w.log_text() for w in (first, second)}
    assert any("gpu0@testbox" in text for text in names.values())
    assert any("gpu1@testbox" in text for text in names.values())
    spare = workers("--lease-gpus", env={**env, "RTBENCH_HEARTBEAT_FILE": str(beats[2])}, ready=False)
    wait_for(lambda: "waiting as a hot spare" in spare.log_text(), 30, "the spare to say why it waits")
    assert " ready." not in spare.log_text()
    said = [health_check(beat) for beat in beats]
    assert [code for code, _ in said] == [0, 0, 0], said  # a spare is healthy: it waits on purpose
    assert {line.split()[1] for _, line in said[:2]} == {"gpu0@testbox", "gpu1@testbox"}
    assert "spare, waiting for a GPU" in said[2][1]
    freed = "gpu0" if "gpu0@testbox" in first.log_text() else "gpu1"
    first.kill_tree()
    spare.wait_ready()
    assert f"{freed}@testbox" in spare.log_text()
    wait_for(lambda: f"{freed}@testbox working" in health_check(beats[2])[1], 30, "the spare's heartbeat to say so")
    publish(broker, [message("feedback/bias_lm_always_on/click_bell/episode_0")], queue="episodes")
    wait_for(lambda: done_count(broker) == 1, 60, "an episode on a leased worker")
    (record,) = records(tmp_path / "results").values()
    assert record["worker"]["gpu"] in ("0", "1") and record["worker"]["device"] == "cpu"
    # The killed worker's heartbeat goes stale: its container's health check would fail.
    code, line = health_check(beats[0], "--max-age", "0")
    assert code == 1 and line.startswith("stale:"), line


def health_check(path, *args: str) -> tuple[int, str]:
    """What the container health check (`python -m worker.heartbeat`) says about ``path``."""
    result = subprocess.run([sys.executable, "-m", "worker.heartbeat", "--file", str(path), *args],
                            capture_output=True, text=True, timeout=30, check=False)
    return result.returncode, result.stdout.strip()


def test_flower_lists_workers_with_basic_auth_and_serves_metrics(workers, queue_env, tmp_path, broker):
    import base64
    import subprocess
    import sys
    import urllib.error
    import urllib.request

    from producer.embedded import free_port

    workers()
    port = free_port()
    flower = subprocess.Popen([sys.executable, "-m", "celery", "-A", "worker.app", "flower", f"--port={port}",
                               "--address=127.0.0.1", "--basic-auth=admin:s3cret"],
                              env={**os.environ, **queue_env}, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    auth = {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret").decode()}

    def get(path: str, headers: dict | None = None) -> tuple[int, str]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, ""
        except OSError:
            return 0, ""

    try:
        wait_for(lambda: get("/metrics")[0] == 200, 60, "flower to serve /metrics")
        assert get("/api/workers")[0] == 401
        workers_json = wait_for(lambda: (lambda r: r[0] == 200 and "@testbox" in r[1] and r[1])(
            get("/api/workers?refresh=1", auth)), 60, "flower to list the worker")
        assert "cpu" in workers_json and "@testbox" in workers_json
        # Flower knows the tasks whose events it saw: publish once it is listening.
        publish(broker, [message("feedback/bias_lm_always_on/click_bell/episode_0")], queue="episodes")
        wait_for(lambda: done_count(broker) == 1, 60, "the episode done")
        tasks = wait_for(lambda: (lambda r: "click_bell" in r[1] and r[1])(get("/api/tasks", auth)), 60,
                         "flower to show the task")
        assert "feedback/bias_lm_always_on/click_bell/episode_0" in tasks
        assert "flower_events_total" in get("/metrics")[1]
    finally:
        os.killpg(flower.pid, signal.SIGKILL)
        flower.wait(10)


def report_command(text: str) -> str:
    """The command after "report:", one line or continued over several (80 columns)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("report:"))
    parts = [lines[start].removeprefix("report:").strip()]
    while parts[-1].endswith("\\") or not parts[-1]:
        start += 1
        parts[-1] = parts[-1].removesuffix("\\").strip()
        parts.append(lines[start].strip())
    return " ".join(part for part in parts if part)


def test_producer_run_is_the_embedded_default_and_leaves_nothing_running(tmp_path, plugin_path):
    import subprocess
    import sys

    results = tmp_path / "results"
    env = embedded_run_env(tmp_path, plugin_path)
    run = subprocess.run([sys.executable, "-m", "producer", "run", "lm20", "--policy", "feedback", "--tasks",
                          "adjust_bottle", "--max-repeat", "2", "--workers", "2"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(records(results)) == 20
    summary = next(line.split() for line in run.stdout.splitlines() if line.startswith("feedback"))
    assert summary[1] == "20/20", run.stdout  # done/expected
    # It ends with the report of the same slice, and the report's numbers are the summary's.
    command = report_command(run.stderr)
    assert shlex.split(command)[:3] == ["rtbench-report", "--spec", "lm20"]
    assert "--tasks adjust_bottle --max-repeat 2" in command and "--policy feedback" in command
    report = subprocess.run([sys.executable, "-m", "reporting.cli", *shlex.split(command)[1:], "--export-json",
                             str(tmp_path / "r.json"), "--quiet"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    overall = json.loads((tmp_path / "r.json").read_text())["per_policy"]["feedback"]["overall"]
    assert (overall["completed"], overall["expected"]) == (20, 20)
    assert (overall["successes"], overall["errors"]) == (int(summary[3]), int(summary[4]))
    assert f"{overall['success_rate']:.1%}" == summary[5]
    marker = str(results)
    leftover = []
    for proc in os.listdir("/proc"):
        if proc.isdigit():
            try:
                environ = Path(f"/proc/{proc}/environ").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if marker in environ:
                leftover.append(proc)
    assert leftover == [], "processes started by producer run are still alive"
    again = subprocess.run([sys.executable, "-m", "producer", "run", "lm20", "--policy", "feedback", "--tasks",
                            "adjust_bottle", "--max-repeat", "2", "--workers", "1"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "enqueued 0" in again.stderr


def test_status_watch_prints_once_when_piped_with_or_without_a_spec(producer):
    producer("enqueue", "lm20", "--policy", "feedback", "--tasks", "click_bell", "--max-repeat", "1")
    overview = producer("status", "--watch", timeout=30)  # a live view would never return
    assert overview.returncode == 0 and overview.stdout.count("waiting") == 1, overview.stdout + overview.stderr
    per_spec = producer("status", "lm20", "--watch", timeout=30)
    assert per_spec.returncode == 0 and per_spec.stdout.count("done/expected") == 1, per_spec.stdout
    assert "0/10" in per_spec.stdout and "10 queued or running" in per_spec.stdout


def test_published_messages_match_what_celery_itself_sends(broker, redis_server):
    import base64

    from celery import Celery

    reference = Celery("reference", broker=redis_server)
    reference.conf.task_default_queue = "reference"
    reference.send_task("rtbench.run_episode", kwargs=message("feedback/bias_lm_always_on/click_bell/episode_0")
                        .kwargs, queue="reference")
    theirs = json.loads(broker.lpop("reference"))
    publish(broker, [message("feedback/bias_lm_always_on/click_bell/episode_0")], queue="episodes")
    ours = json.loads(broker.lpop("episodes"))
    assert set(ours) == set(theirs)
    assert set(ours["headers"]) == set(theirs["headers"])
    assert set(ours["properties"]) - {"priority"} == set(theirs["properties"]) - {"priority"}
    # Identical task arguments, byte for byte; ours travel as text (body_encoding utf-8), theirs in base64.
    assert ours["properties"]["body_encoding"] == "utf-8"
    assert ours["body"].encode() == base64.b64decode(theirs["body"])
    assert ours["headers"]["task"] == theirs["headers"]["task"]


def test_dry_run_priority_and_requeue_stale(producer, broker):
    dry = producer("enqueue", "lm20", "--policy", "feedback", "--tasks", "click_bell", "--max-repeat", "1",
                   "--dry-run")
    assert "would enqueue 10" in dry.stdout and broker.llen("episodes") == 0
    sent = producer("enqueue", "lm20", "--policy", "feedback", "--tasks", "click_bell", "--max-repeat", "1",
                    "--priority", "6")
    assert "enqueued 10" in sent.stdout and broker.llen("episodes\x06\x166") == 10
    broker.delete("episodes\x06\x166")  # the messages are lost (say, a Redis without persistence)
    kept = producer("enqueue", "lm20", "--policy", "feedback", "--tasks", "click_bell", "--max-repeat", "1")
    assert "enqueued 0" in kept.stdout and "already enqueued" in kept.stdout
    stale = producer("enqueue", "lm20", "--policy", "feedback", "--tasks", "click_bell", "--max-repeat", "1",
                     "--requeue-stale", "--stale-after", "0")
    assert "enqueued 10" in stale.stdout and "10 of them stale re-sends" in stale.stdout
    again = producer("enqueue", "lm20", "--policy", "feedback", "--tasks", "click_bell", "--max-repeat", "1",
                     "--requeue-stale", "--stale-after", "0")
    assert "enqueued 0" in again.stdout  # now they are in the queue again: not stale


def test_worker_start_errors_name_the_variable(tmp_path, queue_env):
    import subprocess
    import sys

    bad = subprocess.run([sys.executable, "-m", "worker", "--device", "cpu"], capture_output=True, text=True,
                         env={**os.environ, **queue_env, "RTBENCH_MAX_ATTEMPTS": "zero"}, timeout=60)
    assert bad.returncode == 2 and "RTBENCH_MAX_ATTEMPTS='zero': expected an integer" in bad.stderr
    missing = subprocess.run([sys.executable, "-m", "worker", "--device", "cpu"], capture_output=True, text=True,
                             env={**os.environ, **queue_env, "RTBENCH_PRELOAD_SPECS": "lm20,nope.json"}, timeout=60)
    assert missing.returncode == 2 and "spec file not found (nope.json)" in missing.stderr
    # An unreachable broker, named with its password hidden at every retry: test_queue_faults.py



def test_infrastructure_errors_are_retried_with_backoff_then_recorded(workers, broker, tmp_path):
    episode = message("server_lost/iir_lm_always_on/click_bell/episode_0")
    publish(broker, [episode], queue="episodes")
    worker = workers(env={"RTBENCH_MAX_ATTEMPTS": "2"})
    wait_for(lambda: records(tmp_path / "results"), 60, "the episode to be recorded")
    wait_for(lambda: queue_is_drained(broker), 30, "the queue to drain")
    assert done_count(broker) == 0  # an infrastructure-error record is not done: enqueue sends it again
    (record,) = records(tmp_path / "results").values()
    assert record["error_type"] == "policy_server_lost" and record["attempt"] == 2
    assert record["error"].startswith("policy_server_lost: ConnectionResetError: policy server closed")
    assert "retrying in 2 s" in worker.log_text()


def test_an_external_test_database_that_is_not_empty_is_refused(redis_server, broker, tmp_path):
    import subprocess
    import sys

    broker.set("someone:else", "data")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/integration/test_queue.py::test_published_messages_match_what_celery_itself_sends"],
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "RTBENCH_TEST_REDIS_URL": redis_server})
    assert run.returncode == 2, run.stdout[-2000:]
    assert "holds 1 keys; the tests flush the database" in run.stdout + run.stderr
    assert broker.get("someone:else") == "data"  # not flushed


def test_slots_per_gpu_lease_every_slot_once_and_a_capped_policy_keeps_to_its_slots(workers, producer, broker,
                                                                                     tmp_path):
    (tmp_path / "policies.yml").write_text("policies:\n  Whole:\n    adapter: feedback\n    slots_per_gpu: 1\n")
    env = {"CUDA_VISIBLE_DEVICES": "0", "RTBENCH_DEVICE": "cpu", "RTBENCH_SLOTS_PER_GPU": "2",
           "RTBENCH_POLICIES_FILE": str(tmp_path / "policies.yml")}
    first, second = workers("--lease-gpus", env=env), workers("--lease-gpus", env=env)
    names = sorted(name for w in (first, second) for name in ("gpu0.0@testbox", "gpu0.1@testbox")
                   if f"{name} ready." in w.log_text())
    assert names == ["gpu0.0@testbox", "gpu0.1@testbox"]  # one GPU, two slots, each leased once
    spare = workers("--lease-gpus", env=env, ready=False)
    wait_for(lambda: "all 2 slots of 1 GPUs (0) are leased" in spare.log_text(), 30, "the spare to wait")
    sent = producer("enqueue", "lm20", "--policy", "Whole", "--policy", "feedback", "--tasks", "click_bell",
                    "--settings", "bias_lm_always_on,scale_lm_always_on", "--max-repeat", "2")
    assert sent.returncode == 0, sent.stderr
    wait_for(lambda: done_count(broker) == 8, 120, "all 8 episodes")
    written = records(tmp_path / "results").values()
    whole = {(r["worker"]["hostname"], r["worker"]["gpu_slot"]) for r in written if r["policy"] == "Whole"}
    assert whole == {("gpu0.0@testbox", 0)}  # the capped policy ran on slot 0 only
    assert {r["worker"]["gpu"] for r in written} == {"0"}
    holder = first if "gpu0.1@testbox ready." in first.log_text() else second
    holder.kill_tree()
    spare.wait_ready()
    assert "gpu0.1@testbox ready." in spare.log_text()  # the spare took the freed slot
    # producer status shows who runs what, by GPU and slot (20 episodes of ~1.5 s keep both busy).
    slow = producer("enqueue", "lm20", "--policy", "slow", "--tasks", "click_bell", "--settings", "bias_lm_always_on",
                    "--max-repeat", "20")
    assert slow.returncode == 0, slow.stderr

    def shown(*args: str) -> str:
        return producer("status", "lm20", "--policy", "slow", "--tasks", "click_bell", "--max-repeat", "20",
                        *args).stdout

    wait_for(lambda: re.search(r"testbox +2 +gpu0\.0 gpu0\.1", shown()), 60, "both slots in producer status")
    wait_for(lambda: len(re.findall(r"testbox +gpu0\.[01] +slow/bias_lm_always_on/click_bell/episode_",
                                    shown("--workers"))) == 2, 60, "each worker and its episode")


def test_status_reads_counters_that_enqueue_repairs_from_the_sets(producer, workers, broker, tmp_path):
    sent = producer("enqueue", "lm20", "--policy", "feedback", "--tasks", "click_bell", "--max-repeat", "2")
    assert "enqueued 20" in sent.stdout, sent.stderr
    counters_agree(producer, "feedback")
    status = producer("status", "lm20", "--policy", "feedback")
    row = next(line for line in status.stdout.splitlines() if line.startswith("feedback"))
    # done/expected, %, then queued (20), running, dead, given up, stopped
    assert row.split()[1:2] == ["0/10,000"] and row.split()[3:] == ["20", "0", "0", "0", "0"], status.stdout
    sha = load_spec("lm20").sha256
    broker.hincrby(f"rtbench:counts:{sha}", "done:feedback", 7)  # a counter gone wrong
    broker.hdel(f"rtbench:counts:{sha}", "enqueued:feedback")
    checked = producer("status", "lm20", "--policy", "feedback", "--verify")
    words = " ".join(checked.stdout.split())
    assert "counters differ from the sets" in words and "feedback: counter done is 7, the sets say 0" in words
    assert "feedback: counter enqueued is 0, the sets say 20" in words
    repaired = producer("enqueue", "lm20", "--policy", "feedback", "--tasks", "click_bell", "--max-repeat", "2")
    assert "repaired 2 status counter(s)" in repaired.stdout, repaired.stdout
    counters_agree(producer, "feedback")
    workers()
    wait_for(lambda: done_count(broker) == 20, 120, "the 20 episodes")
    counters_agree(producer, "feedback")


def test_re_enqueue_with_nothing_new_skips_the_scan_until_a_record_changes(producer, broker, tmp_path,
                                                                            small_spec_data):
    spec_file = tmp_path / "small.json"  # a whole spec: the fast path is for whole specs
    spec_file.write_text(json.dumps(small_spec_data))
    first = producer("enqueue", str(spec_file), "--policy", "feedback")
    assert first.returncode == 0 and "enqueued 120" in first.stdout, first.stdout + first.stderr
    again = producer("enqueue", str(spec_file), "--policy", "feedback")
    assert "enqueued 0, skipped 120 (enqueued or done; no record changed since the last enqueue)" in \
        " ".join(again.stdout.split()), again.stdout
    # A record appears (another machine's, pulled by git): the next enqueue reads the records again.
    spec = load_spec(str(spec_file))
    key = next(iter_episodes(spec, ["feedback"]))
    write_record(tmp_path / "results", new_record(key, success=True, error=None, steps=1, seed=1,
                                                  perturbation_log=None, spec_name=spec.name,
                                                  spec_sha256=spec.sha256, backend="kinematic", started_at="t",
                                                  finished_at="t", duration_s=1.0))
    full = producer("enqueue", str(spec_file), "--policy", "feedback")
    assert "enqueued 0" in full.stdout and "no record changed" not in full.stdout, full.stdout
    assert key.id in broker.smembers(f"rtbench:done:{spec.sha256}")  # reconciled with the record
    broker.hincrby(f"rtbench:counts:{spec.sha256}", "enqueued:feedback", 5)  # a counter gone wrong
    checked = producer("enqueue", str(spec_file), "--policy", "feedback")
    assert "no record changed" not in checked.stdout and "repaired" in checked.stdout, checked.stdout
