"""``producer dead`` at fleet scale (issue 25, point 3): 400 letters of a mistyped policy,
dead-lettered by a real worker, read as a summary by reason, listed one line each at 80
columns with full ids, and requeued or purged by reason."""

from __future__ import annotations

import json
import re

from benchmark.spec.spec_file import load_spec
from tests.integration.queue_support import wait_for
from worker.queue.publish import MessageBuilder

ID = re.compile(r"feedbak/[a-z_]+/(adjust_bottle|click_bell)/episode_\d+")


def test_four_hundred_dead_letters_read_as_a_summary_a_list_and_are_handled_by_reason(producer, workers,
                                                                                      broker):
    sent = producer("enqueue", "lm20", "--policy", "feedbak", "--tasks", "adjust_bottle,click_bell",
                    "--max-repeat", "20", "--allow-unknown-policy")
    assert "enqueued 400" in sent.stdout, sent.stdout + sent.stderr
    builder = MessageBuilder("episodes")
    sha = load_spec("lm20").sha256
    broker.lpush("episodes", builder.envelope_for({"episode_id": "../../x", "spec": "lm20", "spec_sha256": sha},
                                                  "bad-0"))
    broker.lpush("episodes", builder.envelope_for({"episode": 3}, "bad-1"))
    worker = workers()
    wait_for(lambda: broker.llen("rtbench:dead") == 402, 120, "402 dead letters")
    worker.kill_tree()  # the requeued letters below stay in the queue

    summary = producer("dead")
    assert summary.returncode == 0, summary.stderr
    lines = summary.stdout.splitlines()
    assert len(lines) < 20 and max(map(len, lines)) <= 80, summary.stdout
    assert lines[0] == "402 dead letters, 3 reasons"
    assert re.match(r"unknown_policy +400  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  \d{4}-", lines[2]), summary.stdout
    assert ID.fullmatch(lines[3].removeprefix("  e.g. ")), lines[3]  # a whole id
    assert lines[4] == "  policies: feedbak (unknown)"
    assert "'feedbak'" in summary.stdout  # the latest detail, whole

    listed = producer("dead", "--list", "--reason", "unknown_policy", "--limit", "10")
    ids = [m.group(0) for m in ID.finditer(listed.stdout)]
    assert len(ids) == 10 and listed.stdout.rstrip().endswith("... 390 more (--limit 0 lists all)")
    everything = producer("dead", "--list", "--limit", "0")
    rows = [line for line in everything.stdout.splitlines() if re.match(r"  feedbak/|  \(no episode id\)", line)]
    assert len(rows) == 402 and max(map(len, everything.stdout.splitlines())) <= 80
    assert len({m.group(0) for m in ID.finditer(everything.stdout)}) == 400  # every id, whole

    as_json = [json.loads(line) for line in producer("dead", "--json").stdout.splitlines()]
    assert len(as_json) == 402 and all({"reason", "detail", "time", "message"} <= set(e) for e in as_json)

    nosuch = producer("dead", "--reason", "nosuch")
    assert nosuch.returncode == 2 and "reasons now: invalid_episode_id, malformed_message, unknown_policy" \
        in nosuch.stderr
    purged = producer("dead", "--purge", "--reason", "invalid_episode_id")
    assert "purged 1 dead letters" in purged.stdout
    left = [json.loads(raw)["reason"] for raw in broker.lrange("rtbench:dead", 0, -1)]
    assert sorted(set(left)) == ["malformed_message", "unknown_policy"] and len(left) == 401
    requeued = producer("dead", "--requeue", "--reason", "unknown_policy")
    assert "re-published 400 messages" in requeued.stdout, requeued.stdout
    assert [json.loads(raw)["reason"] for raw in broker.lrange("rtbench:dead", 0, -1)] == ["malformed_message"]
    assert broker.llen("episodes") == 400
