"""``producer status`` tells the truth (issue 25, point 4): queued, running, done and dead each
counted once and equal to what Redis and the records hold, through dead letters, a killed
worker, a Redis restart, a record written while Redis was away and a record damaged after its
episode was marked done; and two producers enqueuing the same slice at once queue each episode
once."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import redis as redis_client

from benchmark.records.episodes import iter_episodes
from benchmark.records.results import new_record, read_record, write_record
from benchmark.spec.spec_file import load_spec
from producer.embedded import EmbeddedRedis
from tests.integration.queue_support import queue_is_drained, records, wait_for

SLICE = ["--tasks", "click_bell", "--settings", "bias_lm_always_on,scale_lm_always_on", "--max-repeat", "5"]
ROW = re.compile(r"^\W*(\S+)\W+([\d,]+)/([\d,]+)\s+\S*\s+[\d.]+%\W+([\d,]+)\W+([\d,]+)\W+([\d,]+)")


def status_of(producer, *policies: str, verify: bool = False) -> tuple[dict[str, dict[str, int]], str]:
    """policy -> done, queued, running, dead, as ``producer status`` prints them for the slice."""
    args = [arg for policy in policies for arg in ("--policy", policy)]
    shown = producer("status", "lm20", *args, *SLICE, *(["--verify"] if verify else []))
    assert shown.returncode == 0, shown.stderr
    rows = {}
    for line in shown.stdout.splitlines():
        if (match := ROW.match(line)) and match.group(1) in policies:
            done, _, queued, running, dead = (int(g.replace(",", "")) for g in match.groups()[1:])
            rows[match.group(1)] = {"done": done, "queued": queued, "running": running, "dead": dead}
    assert set(rows) == set(policies), shown.stdout
    return rows, " ".join(shown.stdout.split())


def done_records(results) -> set[str]:
    return {episode for episode, record in records(results).items() if "success" in record}


def test_status_counts_each_episode_once_through_dead_letters_kills_and_a_redis_restart(tmp_path, queue_env,
                                                                                         producer, workers):
    server = EmbeddedRedis(tmp_path / "own-redis", appendonly=True).start()
    env = {"RTBENCH_BROKER_URL": server.url, "RTBENCH_TEST_STEP_SLEEP": "0.1"}
    queue_env.update(env)
    results = tmp_path / "results"
    try:
        assert "enqueued 10" in producer("enqueue", "lm20", "--policy", "feedbak", *SLICE,
                                         "--allow-unknown-policy").stdout
        assert "enqueued 10" in producer("enqueue", "lm20", "--policy", "slow", *SLICE).stdout
        client = redis_client.Redis.from_url(server.url, decode_responses=True)
        first = workers(env=env)
        wait_for(lambda: client.llen("rtbench:dead") == 10 and len(done_records(results)) >= 2, 120,
                 "the dead letters and two records")
        first.kill_tree()  # perhaps in the middle of an episode: its claim lapses, its message comes back
        rows, _ = status_of(producer, "slow", "feedbak")
        assert rows["feedbak"] == {"done": 0, "queued": 0, "running": 0, "dead": 10}
        assert sum(rows["slow"].values()) == 10  # each episode once: done, queued or running

        server.stop()  # Redis away; meanwhile a record is written (a machine whose mark was lost)
        written = done_records(results)
        spec = load_spec("lm20")
        key = next(k for k in iter_episodes(spec.filter(tasks=["click_bell"], max_repeat=5), ["slow"])
                   if k.id not in written)
        lost_mark = key.id
        write_record(results, new_record(key, success=True, error=None, steps=1, seed=1, perturbation_log=None,
                                         spec_name=spec.name, spec_sha256=spec.sha256, backend="kinematic",
                                         started_at="t", finished_at="t", duration_s=1.0))
        server.start()
        wait_for(lambda: not client.keys("rtbench:claim:*"), 30, "the killed worker's claim to lapse")
        rows, words = status_of(producer, "slow", "feedbak", verify=True)
        assert "1 done record(s) here are not in the done-set" in words and lost_mark in words
        assert rows["slow"]["done"] == len(written) and sum(rows["slow"].values()) == 10
        assert rows["slow"]["running"] == 0

        repaired = producer("enqueue", "lm20", "--policy", "slow", *SLICE)
        assert repaired.returncode == 0, repaired.stderr
        rows, words = status_of(producer, "slow", "feedbak", verify=True)
        assert rows["slow"]["done"] == len(written) + 1 and sum(rows["slow"].values()) == 10
        assert "verified: the done-set agrees with the records here" in words

        workers(env=env)
        wait_for(lambda: len(done_records(results)) == 10, 120, "every slow episode")
        wait_for(lambda: queue_is_drained(client), 60, "the queue to drain")
        rows, words = status_of(producer, "slow", "feedbak", verify=True)
        assert rows == {"slow": {"done": 10, "queued": 0, "running": 0, "dead": 0},
                        "feedbak": {"done": 0, "queued": 0, "running": 0, "dead": 10}}, words
        assert "differ" not in words, words

        damaged = results / "slow/scale_lm_always_on/click_bell/episode_0.json"
        damaged.write_text(damaged.read_text()[:40])  # truncated after its episode was marked done
        rows, words = status_of(producer, "slow", verify=True)
        assert "1 episode(s) in the done-set have no done record here" in words
        resent = producer("enqueue", "lm20", "--policy", "slow", *SLICE)
        said = " ".join(resent.stdout.split())  # the summary wraps between words at 80 columns
        assert "enqueued 1" in said and "1 of them for damaged records" in said, resent.stdout
        wait_for(lambda: read_record(damaged).is_done(), 120, "the damaged episode to run again")
        wait_for(lambda: queue_is_drained(client), 60, "the queue to drain")
        rows, words = status_of(producer, "slow", verify=True)
        assert rows["slow"] == {"done": 10, "queued": 0, "running": 0, "dead": 0}
        assert "verified: the done-set agrees with the records here" in words
        assert [p for p in tmp_path.rglob("episode_0.json*") if "conflicts" in p.parts]  # the damaged file, kept
    finally:
        server.stop()


def test_two_producers_enqueuing_the_same_slice_at_once_queue_each_episode_once(tmp_path, queue_env, broker):
    slice_args = ["--tasks", "click_bell,adjust_bottle", "--max-repeat", "20"]  # 400 episodes
    both = [subprocess.Popen([sys.executable, "-m", "producer", "enqueue", "lm20", "--policy", "feedback",
                              *slice_args], cwd=tmp_path, env={**os.environ, **queue_env},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in both]
    assert all(process.returncode == 0 for process in both), outputs
    assert sorted(re.search(r"enqueued (\d+)", out).group(1) for out, _ in outputs) == ["0", "400"], outputs
    assert broker.llen("episodes") == 400
