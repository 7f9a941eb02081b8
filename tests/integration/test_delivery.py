"""``worker.delivery.deliver`` called in-process against the test Redis: one test per outcome."""

from __future__ import annotations

import errno
import importlib
import json
import os
import stat
import sys
import threading
from dataclasses import replace

import pytest

from benchmark.spec.spec_file import load_spec
from producer.enqueue import plan_enqueue
from tests.integration.queue_support import dead_letters, message
from worker.delivery import DEAD, GAVE_UP, RAN, SKIPPED, Blocked, ChildContext, Defer, Retry, deliver
from worker.queue.publish import publish
from worker.settings import Settings

SHA = load_spec("lm20").sha256


@pytest.fixture
def context(tmp_path, plugin_path, redis_server, broker):
    sys.path.insert(0, str(plugin_path))  # the test plugin's policies, found through their entry points
    importlib.invalidate_caches()
    settings = Settings(broker_url=redis_server, results_dir=tmp_path / "results", machine="testbox",
                        skip_expert_check=True, max_attempts=2, claim_ttl_s=3)
    yield ChildContext(settings)
    sys.path.remove(str(plugin_path))


def run(context: ChildContext, episode_id: str, delivery: str = "d1") -> str:
    kwargs = message(episode_id).kwargs
    outcome = deliver(context, (), kwargs, hostname="cpu1@testbox", delivery_id=delivery)
    context.finisher.flush()
    return outcome


def test_ran_then_skipped(context, broker):
    episode = "feedback/bias_lm_always_on/click_bell/episode_0"
    assert run(context, episode) == RAN
    assert broker.sismember(f"rtbench:done:{SHA}", episode) and not broker.exists(f"rtbench:claim:{episode}")
    assert (context.settings.results_dir / f"{episode}.json").exists()
    assert run(context, episode, "d2") == SKIPPED


def test_an_episode_done_on_another_machine_is_skipped_without_a_claim(context, broker):
    episode = "feedback/bias_lm_always_on/click_bell/episode_0"
    broker.sadd(f"rtbench:done:{SHA}", episode)  # its record is on the other machine, not here
    assert run(context, episode) == SKIPPED
    assert not (context.settings.results_dir / f"{episode}.json").exists()
    assert not broker.exists(f"rtbench:attempts:{episode}") and not broker.exists(f"rtbench:claim:{episode}")


def test_a_message_that_can_never_run_is_a_dead_letter(context, broker):
    outcome = deliver(context, (), {"episode_id": "../../etc/passwd", "spec": "lm20", "spec_sha256": SHA},
                      hostname="cpu1@testbox", delivery_id="d1")
    assert outcome == DEAD and [d["reason"] for d in dead_letters(broker)] == ["invalid_episode_id"]


def test_an_episode_claimed_elsewhere_is_deferred(context, broker):
    episode = "feedback/bias_lm_always_on/click_bell/episode_0"
    broker.set(f"rtbench:claim:{episode}", "gpu0@other:1:x", px=10_000)
    with pytest.raises(Defer) as deferred:
        run(context, episode)
    assert deferred.value.owner == "gpu0@other:1:x" and deferred.value.delay > context.settings.claim_ttl_s


def test_an_infrastructure_failure_is_retried_then_given_up(context, broker):
    episode = "server_lost/bias_lm_always_on/click_bell/episode_0"
    with pytest.raises(Retry) as retried:
        run(context, episode)
    assert retried.value.delay == 2 and "policy_server_lost" in retried.value.cause
    assert run(context, episode, "d2") == GAVE_UP
    record = (context.settings.results_dir / f"{episode}.json").read_text()
    assert '"error_type": "policy_server_lost"' in record
    assert not broker.sismember(f"rtbench:done:{SHA}", episode)  # not done: enqueue sends it again


def test_an_episode_whose_workers_died_is_given_up_as_worker_lost(context, broker):
    episode = "feedback/bias_lm_always_on/click_bell/episode_1"
    broker.set(f"rtbench:attempts:{episode}", 2)  # two workers died running it
    assert run(context, episode) == GAVE_UP
    assert '"error_type": "worker_lost"' in (context.settings.results_dir / f"{episode}.json").read_text()


def test_an_unwritable_results_folder_blocks_the_worker_and_counts_no_attempt(context, broker, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    context.settings = replace(context.settings, results_dir=blocker / "results")
    episode = "feedback/bias_lm_always_on/click_bell/episode_0"
    with pytest.raises(Blocked):
        run(context, episode)
    assert broker.exists("rtbench:blocked:cpu1@testbox")
    assert not broker.exists(f"rtbench:claim:{episode}") and not broker.exists(f"rtbench:attempts:{episode}")
    with pytest.raises(Blocked):  # paused: the next delivery goes back at once, without running
        run(context, "feedback/bias_lm_always_on/click_bell/episode_1")


def test_an_unexpected_exception_is_retried_then_dead_lettered(context, broker):
    episode = "load_fails/bias_lm_always_on/click_bell/episode_0"
    with pytest.raises(Retry):
        run(context, episode)
    assert run(context, episode, "d2") == DEAD
    (dead,) = dead_letters(broker)
    assert dead["reason"] == "delivery_failed" and "(after 2 attempts)" in dead["detail"]


def _watch_fsyncs(monkeypatch, broker, episode: str, fail_files: bool = False) -> list[tuple]:
    """Each fsync as (thread, "file" or "dir", path, the episode in the done-set then)."""
    seen: list[tuple] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        seen.append((threading.current_thread().name, kind, os.readlink(f"/proc/self/fd/{fd}"),
                     broker.sismember(f"rtbench:done:{SHA}", episode)))
        if fail_files and kind == "file":
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def test_a_record_is_marked_finished_only_after_its_file_and_folder_are_synced(context, broker, monkeypatch):
    episode = "feedback/bias_lm_always_on/click_bell/episode_0"
    seen = _watch_fsyncs(monkeypatch, broker, episode)
    assert run(context, episode) == RAN
    path = context.settings.results_dir / f"{episode}.json"
    # Off the episode's path (the finisher's thread), the file before its folder, both before the mark.
    assert seen == [("rtbench-finisher", "file", str(path), False),
                    ("rtbench-finisher", "dir", str(path.parent), False)]
    assert broker.sismember(f"rtbench:done:{SHA}", episode)


def test_a_record_that_cannot_be_synced_is_not_marked_and_enqueue_decides_from_it(context, broker, monkeypatch,
                                                                                 caplog):
    episode = "feedback/bias_lm_always_on/click_bell/episode_0"
    _watch_fsyncs(monkeypatch, broker, episode, fail_files=True)
    assert run(context, episode) == RAN
    assert not broker.sismember(f"rtbench:done:{SHA}", episode)
    assert "could not be made durable (Input/output error); not marked finished" in caplog.text
    monkeypatch.undo()
    # The page cache still holds the record: the next enqueue counts it as done.
    spec = load_spec("lm20")
    plan = plan_enqueue(spec, ["feedback"], context.settings.results_dir, context.state, queue="episodes")
    assert episode in plan.repair_done and episode not in plan.to_send


def test_a_machine_crash_between_the_ack_and_the_mark_is_sent_again(context, broker, monkeypatch):
    """The record's fsyncs run after the message is acknowledged: a power cut before them can
    leave the file empty (or missing) and the episode unmarked. The next ``enqueue`` sends it
    again (a damaged record written after its message was sent: that message ended), and the
    new run replaces the empty file (kept aside, never deleted)."""
    spec = load_spec("lm20")
    episode = "feedback/bias_lm_always_on/click_bell/episode_0"
    publish(broker, [message(episode)], queue="episodes")
    broker.delete("episodes")  # delivered and acknowledged
    monkeypatch.setattr(context.finisher, "submit", lambda *args, **kwargs: None)  # the crash came first
    assert run(context, episode) == RAN
    path = context.settings.results_dir / f"{episode}.json"
    path.write_bytes(b"")  # what the crash left of the unsynced file
    broker.delete(f"rtbench:claim:{episode}")  # expired with its heartbeat
    monkeypatch.undo()
    # (The rest of the spec was never enqueued: the plan sends it too.)
    plan = plan_enqueue(spec, ["feedback"], context.settings.results_dir, context.state, queue="episodes")
    assert episode in plan.to_send and plan.damaged == [episode] and plan.stale == 0
    assert run(context, episode, "d2") == RAN
    assert json.loads(path.read_bytes())["success"] is not None
    kept = list((context.settings.results_dir.parent / ".rtbench" / "conflicts").rglob("episode_0.json.*"))
    assert [k.read_bytes() for k in kept] == [b""]
    assert broker.sismember(f"rtbench:done:{SHA}", episode)
