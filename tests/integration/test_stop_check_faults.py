"""A stop, killed at every step in turn, is finished by the next check (issue 27); a message
of a stopped episode that is still delivered is acknowledged without running. Real Redis."""

from __future__ import annotations

import contextlib
import json

import pytest

import worker.stop_check as stop_check_module
from benchmark.records.stop_notes import note_name
from benchmark.spec.spec_file import load_spec
from producer.stop_when import set_stop_rule
from reporting.stop_rule import parse_stop_rule
from worker.queue.publish import queued_task_id
from worker.queue.state import STOPPED_ALREADY, QueueState
from worker.queue.stop_rules import WITHDRAWN_FOR_GOOD, StopRules
from worker.stop_check import StopCheck

A, B = "A", "B"
ROUNDS_RUN, REPEATS = 4, 8


class Killed(BaseException):
    """What a kill -9 leaves: nothing after this point runs."""


def slice_spec():
    return load_spec("lm20").filter(("bias_lm_always_on", "scale_lm_always_on"), ("adjust_bottle", "click_bell"),
                                    REPEATS)


def ids_of(policy: str, repeat: int, spec) -> list[str]:
    return [f"{policy}/{s.id}/{t}/episode_{repeat}" for s in spec.settings for t in spec.tasks]


def prepare(broker, tmp_path):
    """A and B enqueued under decided:A,B; four rounds done (A solves all, B none); one episode
    of round 5 claimed (running); one message delivered (in kombu's unacked hash)."""
    spec, state = slice_spec(), QueueState(broker)
    rule = parse_stop_rule(f"decided:{A},{B}", [A, B])
    set_stop_rule(state, spec, [A, B], rule, "episodes", tmp_path / "results")
    every = [i for r in range(REPEATS) for p in (A, B) for i in ids_of(p, r, spec)]
    state.publish_ids("lm20", spec.sha256, every, queue="episodes")
    finished = [i for r in range(ROUNDS_RUN) for p in (A, B) for i in ids_of(p, r, spec)]
    StopRules(broker).note_outcomes(spec.sha256, [(i, "1" if i.startswith(A) else "0") for i in finished])
    state.mark_finished([(spec.sha256, i, None, True, None, None) for i in finished])
    for raw in broker.lrange("episodes", 0, -1):  # their messages went: taken and acknowledged
        if queued_task_id(raw) in {state_task_id(spec, i) for i in finished}:
            broker.lrem("episodes", 1, raw)
    running = ids_of(A, ROUNDS_RUN, spec)[0]
    broker.set(f"rtbench:claim:{running}", "w@m:1:t")
    assert json.loads(json.loads(broker.rpop("episodes"))["body"])[1]["episode_id"] == running  # it runs
    delivered = broker.rpop("episodes")  # the next oldest, as kombu's consumer takes it
    broker.hset("unacked", "tag", json.dumps([json.loads(delivered), "", "episodes"]))
    return spec, state, running, every, finished


def state_task_id(spec, episode_id: str) -> str:
    from worker.queue.messages import task_id

    return task_id(spec.sha256, episode_id)


def outcome(broker, tmp_path, spec, running: str) -> dict:
    """What the stop left: the note files, the sets and the queue."""
    results = tmp_path / "results"
    return {
        "notes": [json.loads((results / p / note_name(spec.sha256)).read_text()) for p in (A, B)],
        "stopped": sorted(broker.smembers(f"rtbench:stopped:{spec.sha256}")),
        "waiting": broker.llen("episodes"),
        "checked": [int(broker.hget(f"rtbench:stop_checked:{spec.sha256}", p)) for p in (A, B)],
        "running_stopped": broker.sismember(f"rtbench:stopped:{spec.sha256}", running),
    }


STEPS = ["note_stop", "write_note", "write_note", "withdraw_sets", "delete_messages", "raise_checked",
         "raise_checked"]


@pytest.mark.parametrize("killed_at", range(len(STEPS) + 1))
def test_a_stop_killed_at_any_step_is_finished_by_the_next_check(broker, tmp_path, monkeypatch, killed_at):
    spec, state, running, every, finished = prepare(broker, tmp_path)
    rules = StopRules(broker)
    calls = []

    def step(name, real):
        def wrapped(*args, **kwargs):
            calls.append(name)
            if len(calls) - 1 == killed_at:
                raise Killed(name)
            return real(*args, **kwargs)
        return wrapped

    with monkeypatch.context() as patch:
        patch.setattr(rules, "note_stop", step("note_stop", rules.note_stop))
        patch.setattr(rules.counters, "withdraw", step("withdraw_sets", rules.counters.withdraw))
        patch.setattr(rules, "_delete", step("delete_messages", rules._delete))
        patch.setattr(stop_check_module, "write_stop_note", step("write_note", stop_check_module.write_stop_note))
        patch.setattr(rules, "raise_checked", step("raise_checked", rules.raise_checked))
        checker = StopCheck(rules, tmp_path / "results", "m1")
        with contextlib.suppress(Killed):
            checker.check(spec.sha256, A, rules.rule(spec.sha256, A))
    assert killed_at >= len(STEPS) or calls[killed_at] == STEPS[killed_at]
    fresh = StopRules(broker)
    for policy in (A, B):  # not finished for a policy: its next records check again
        if fresh.checked(spec.sha256, policy) != WITHDRAWN_FOR_GOOD:
            assert StopCheck(fresh, tmp_path / "results", "m2").check(spec.sha256, policy,
                                                                      fresh.rule(spec.sha256, policy))
    left = outcome(broker, tmp_path, spec, running)
    assert left["notes"][0] == left["notes"][1] and left["notes"][0]["after_round"] == ROUNDS_RUN
    assert left["notes"][0]["machine"] == "m1" or killed_at == 0  # the first note is kept
    unrun = sorted(set(every) - set(finished) - {running})
    assert left["stopped"] == unrun and not left["running_stopped"]
    assert left["waiting"] == 0 and left["checked"] == [WITHDRAWN_FOR_GOOD] * 2
    # The delivered message's episode is stopped: its claim says so, and nothing is counted.
    delivered = json.loads(broker.hget("unacked", "tag"))[0]
    episode = json.loads(delivered["body"])[1]["episode_id"]
    assert episode in unrun
    attempt, _ = state.claim(spec.sha256, episode, "w2@m:2:t", 30, "w2@m")
    assert attempt == STOPPED_ALREADY and not broker.exists(f"rtbench:attempts:{episode}")


def test_resume_stopped_sends_what_the_stop_withdrew(broker, tmp_path):
    spec, state, running, every, finished = prepare(broker, tmp_path)
    rules = StopRules(broker)
    assert StopCheck(rules, tmp_path / "results", "m1").check(spec.sha256, A, rules.rule(spec.sha256, A))
    from producer.enqueue import SKIP_STOPPED, plan_enqueue

    plain = plan_enqueue(spec, [A, B], tmp_path / "results", state, queue="episodes")
    assert plain.to_send == [] and plain.skipped[SKIP_STOPPED] == len(every) - len(finished) - 1
    resumed = plan_enqueue(spec, [A, B], tmp_path / "results", state, queue="episodes", resume_stopped=True)
    assert sorted(resumed.to_send) == sorted(set(every) - set(finished) - {running})
    assert resumed.to_send[:2] == [ids_of(A, ROUNDS_RUN, spec)[1], ids_of(A, ROUNDS_RUN, spec)[2]]  # in rounds


def test_the_marks_note_the_outcomes_and_a_failed_check_leaves_them(broker, tmp_path, monkeypatch, caplog):
    """The finisher's marks note the outcomes of a policy with a stop rule in the same script
    (no kill can keep one and lose the other); a check that fails is logged and the records
    stay marked; the next records check again."""
    import redis

    from benchmark.records.results import write_record
    from tests.integration.test_sync import record
    from worker.finisher import Finisher

    spec, state = slice_spec(), QueueState(broker)
    set_stop_rule(state, spec, [A, B], parse_stop_rule(f"decided:{A},{B}", [A, B]), "episodes", tmp_path / "r")
    check = StopCheck(StopRules(broker), tmp_path / "r", "m1")
    monkeypatch.setattr(check, "check", lambda *a: (_ for _ in ()).throw(redis.ConnectionError("reset by peer")))
    finisher = Finisher(state, check)
    for repeat in range(ROUNDS_RUN):
        for policy in (A, B):
            for episode in ids_of(policy, repeat, spec):
                _, setting, task, _ = episode.split("/")
                path = write_record(tmp_path / "r", record(policy, setting, task, repeat, "m1",
                                                            success=policy == A))
                finisher.submit(path, spec.sha256, episode, None, done=True, outcome="1" if policy == A else "0")
                finisher.flush()
    marked = 2 * ROUNDS_RUN * 4
    assert broker.scard(f"rtbench:done:{spec.sha256}") == marked  # every record marked
    assert broker.hlen(f"rtbench:outcomes:{spec.sha256}") == marked
    assert broker.hget(f"rtbench:outcomes:{spec.sha256}", ids_of(B, 0, spec)[0]) == "0"
    assert "could not check the stop rules" in caplog.text
    assert not broker.hlen(f"rtbench:stop_notes:{spec.sha256}")
    monkeypatch.undo()  # the next records' check (past the 2 s between checks) stops the slice
    monkeypatch.setattr(stop_check_module, "MIN_INTERVAL_S", 0.0)
    path = write_record(tmp_path / "r", record(A, spec.settings[0].id, spec.tasks[0], ROUNDS_RUN, "m1"))
    finisher.submit(path, spec.sha256, ids_of(A, ROUNDS_RUN, spec)[0], None, done=True, outcome="1")
    finisher.flush()
    assert json.loads(broker.hget(f"rtbench:stop_notes:{spec.sha256}", B))["after_round"] == ROUNDS_RUN
