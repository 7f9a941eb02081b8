"""``producer status`` tells the truth (issue 25, point 4): queued, running, done, dead, given up
and stopped each counted once and equal to what Redis and the records hold, through dead
letters, a killed worker, a Redis restart, a record written while Redis was away, a record
damaged after its episode was marked done, retries that ran out and purged letters; records
lost from the tree are sent again by ``enqueue --reconcile`` once their machine has pushed;
and two producers enqueuing the same slice at once queue each episode once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import redis as redis_client

from benchmark.records.episodes import iter_episodes
from benchmark.records.results import new_record, read_record, write_record
from benchmark.spec.spec_file import load_spec
from producer.embedded import EmbeddedRedis
from tests.integration.queue_support import queue_is_drained, records, wait_for

SLICE = ["--tasks", "click_bell", "--settings", "bias_lm_always_on,scale_lm_always_on", "--max-repeat", "5"]
SMALL = ["--tasks", "click_bell", "--settings", "bias_lm_always_on", "--max-repeat", "2"]
ROW = re.compile(r"^(\S+)\s+([\d,]+)/[\d,]+\s+[\d.]+%" + r"\s+([\d,]+)" * 5 + r"\s*$")
COLUMNS = ("done", "queued", "running", "dead", "given_up", "stopped")


def status_of(producer, *policies: str, verify: bool = False, spec_slice: list[str] = SLICE,
              extra: tuple[str, ...] = ("given_up", "stopped")) -> tuple[dict[str, dict[str, int]], str]:
    """policy -> done, queued, running, dead (and the ``extra`` columns) as ``producer status``
    prints them for the slice; the words of its whole output."""
    args = [arg for policy in policies for arg in ("--policy", policy)]
    shown = producer("status", "lm20", *args, *spec_slice, *(["--verify"] if verify else []))
    assert shown.returncode == 0, shown.stderr
    rows = {}
    for line in shown.stdout.splitlines():
        if (match := ROW.match(line)) and match.group(1) in policies:
            counts = dict(zip(COLUMNS, (int(g.replace(",", "")) for g in match.groups()[1:]), strict=True))
            rows[match.group(1)] = {k: v for k, v in counts.items() if k not in extra}
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


def test_given_up_and_stopped_are_counted_and_sent_again_only_as_asked(producer, workers, broker, tmp_path):
    """Retries that ran out (timeouts): given up, sent again by the next enqueue. Dead letters
    purged: stopped, sent again only with --resume-stopped."""
    assert "enqueued 2" in producer("enqueue", "lm20", "--policy", "stuck", *SMALL).stdout
    assert "enqueued 2" in producer("enqueue", "lm20", "--policy", "feedbak", *SMALL,
                                    "--allow-unknown-policy").stdout
    worker = workers(env={"RTBENCH_EPISODE_TIMEOUT": "2", "RTBENCH_HARD_TIMEOUT_MARGIN": "2",
                          "RTBENCH_MAX_ATTEMPTS": "2"})
    wait_for(lambda: len(records(tmp_path / "results")) == 2 and broker.llen("rtbench:dead") == 2, 120,
             "two timeout records and two dead letters")
    wait_for(lambda: queue_is_drained(broker), 60, "the queue to drain")
    worker.kill_tree()
    assert all(r["error_type"] == "timeout" for r in records(tmp_path / "results").values())
    rows, words = status_of(producer, "stuck", "feedbak", verify=True, spec_slice=SMALL, extra=())
    assert rows == {"stuck": dict.fromkeys(COLUMNS, 0) | {"given_up": 2},
                    "feedbak": dict.fromkeys(COLUMNS, 0) | {"dead": 2}}, words
    assert "verified: the counters agree with the sets" in words

    purged = producer("dead", "--purge")
    assert purged.returncode == 0 and "purged 2 dead letters" in purged.stdout, purged.stdout
    assert all(len(line) <= 80 for line in purged.stdout.splitlines())
    plain = producer("enqueue", "lm20", "--policy", "stuck", "--policy", "feedbak", *SMALL, "--allow-unknown-policy")
    said = " ".join(plain.stdout.split())
    assert "enqueued 2" in said and "skipped 2 (stopped" in said, plain.stdout  # the given-up ones only
    rows, words = status_of(producer, "stuck", "feedbak", verify=True, spec_slice=SMALL, extra=())
    assert rows == {"stuck": dict.fromkeys(COLUMNS, 0) | {"queued": 2},
                    "feedbak": dict.fromkeys(COLUMNS, 0) | {"stopped": 2}}, words
    assert "verified: the counters agree with the sets" in words

    resumed = producer("enqueue", "lm20", "--policy", "feedbak", *SMALL, "--resume-stopped", "--allow-unknown-policy")
    assert "enqueued 2" in resumed.stdout, resumed.stdout
    rows, words = status_of(producer, "feedbak", verify=True, spec_slice=SMALL, extra=())
    assert rows == {"feedbak": dict.fromkeys(COLUMNS, 0) | {"queued": 2}}, words
    assert "verified: the counters agree with the sets" in words


def test_reconcile_resends_lost_records_only_once_their_machine_has_pushed(producer, workers, broker, tmp_path):
    results = tmp_path / "results"
    assert "enqueued 4" in producer("enqueue", "lm20", "--policy", "feedback", *SMALL[:4], "--max-repeat",
                                    "4").stdout
    remote = workers(env={"RTBENCH_MACHINE": "gpu-node-2"})  # its records reach the hub by its sync
    wait_for(lambda: len(done_records(results)) == 4, 60, "four records")
    wait_for(lambda: queue_is_drained(broker), 60, "the queue to drain")
    remote.kill_tree()
    git = ["git", "-C", str(results), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", str(results)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "gpu-node-2's records"], check=True)
    lost = sorted(done_records(results))[:2]
    for episode_id in lost:
        (results / f"{episode_id}.json").unlink()  # deleted from the tree the fleet syncs to
    slice_args = [*SMALL[:4], "--max-repeat", "4"]
    _, words = status_of(producer, "feedback", verify=True, spec_slice=slice_args)
    assert "2 episode(s) in the done-set have no done record here" in words, words

    plain = producer("enqueue", "lm20", "--policy", "feedback", *slice_args)
    assert "enqueued 0" in plain.stdout, plain.stdout  # the done-set wins without --reconcile
    waiting = producer("enqueue", "lm20", "--policy", "feedback", *slice_args, "--reconcile")
    said = " ".join(waiting.stdout.split())
    assert "enqueued 0" in said and "2 missing here may still come from gpu-node-2" in said, waiting.stdout
    assert all(len(line) <= 80 for line in waiting.stdout.splitlines())

    sync_key = "rtbench:sync:gpu-node-2"
    broker.hset(sync_key, mapping={"ok_started": time.time(), "commit": "ab" * 20})  # a push not pulled here
    refused = producer("enqueue", "lm20", "--policy", "feedback", *slice_args, "--reconcile")
    assert refused.returncode == 2 and "lacks gpu-node-2's last push" in refused.stderr, refused.stderr
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    broker.hset(sync_key, mapping={"ok_started": time.time(), "commit": head})  # pushed since they ended
    sent = producer("enqueue", "lm20", "--policy", "feedback", *slice_args, "--reconcile")
    said = " ".join(sent.stdout.split())
    assert "enqueued 2" in said and "2 of them for records lost from the results tree" in said, sent.stdout

    workers()  # this machine (testbox): no sync, its records go straight into this tree
    wait_for(lambda: set(lost) <= done_records(results), 60, "the lost episodes to run again")
    wait_for(lambda: queue_is_drained(broker), 60, "the queue to drain")
    (results / f"{lost[0]}.json").unlink()
    again = producer("enqueue", "lm20", "--policy", "feedback", *slice_args, "--reconcile")
    assert "enqueued 1" in again.stdout, again.stdout
    wait_for(lambda: set(lost) <= done_records(results), 60, "the lost episode to run again")
    wait_for(lambda: queue_is_drained(broker), 60, "the queue to drain")
    _, words = status_of(producer, "feedback", verify=True, spec_slice=slice_args)
    assert "verified: the done-set agrees with the records here" in words, words
