"""Stop rules through real workers (issue 27): a slice whose question is answered after a few
rounds stops, its remaining messages withdrawn; a plain enqueue then sends nothing, status
and the report say why, and ``--resume-stopped`` sends the rest."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from rich.console import Console

from benchmark.records.stop_notes import note_name
from benchmark.spec.spec_file import load_spec
from reporting.cli import make_report
from reporting.render.terminal import print_report
from tests.integration.queue_support import embedded_run_env, queue_is_drained, records, wait_for

A, B = "expert_replay", "hold"  # solves nearly every kinematic episode; never solves one
SLICE = ["--tasks", "adjust_bottle,click_bell", "--settings", "bias_lm_always_on,scale_lm_always_on",
         "--max-repeat", "20"]  # 4 slots a round, 20 rounds: 80 episodes a policy
PER_POLICY = 80


def settled(broker, sha: str) -> bool:
    """The stop happened and nothing is left to run."""
    return broker.hlen(f"rtbench:stop_notes:{sha}") == 2 and queue_is_drained(broker) and not broker.keys(
        "rtbench:claim:*")


def test_a_decided_slice_stops_and_a_plain_enqueue_sends_nothing(producer, workers, broker, tmp_path):
    sha = load_spec("lm20").sha256
    sent = producer("enqueue", "lm20", "--policy", A, "--policy", B, *SLICE, "--stop-when", f"decided:{A},{B}")
    assert sent.returncode == 0, sent.stderr
    assert "enqueued 160" in sent.stdout and f"stops {A}, {B} when decided:{A},{B} holds" in sent.stdout
    workers(), workers()
    wait_for(lambda: settled(broker, sha), 180, "the slice to stop and drain")

    results = tmp_path / "results"
    ran = records(results)
    assert 0 < len(ran) < 2 * PER_POLICY  # stopped early
    note = json.loads((results / A / note_name(sha)).read_text())
    assert note == json.loads((results / B / note_name(sha)).read_text())  # one note, both policies
    assert note["rule"] == f"decided:{A},{B}" and 4 <= note["after_round"] < 20 and note["rounds"] == 20
    stopped = broker.scard(f"rtbench:stopped:{sha}")
    assert stopped == 2 * PER_POLICY - len(ran)  # every episode either ran or is stopped

    again = producer("enqueue", "lm20", "--policy", A, "--policy", B, *SLICE)
    assert "enqueued 0" in again.stdout and f"skipped {stopped}" in " ".join(again.stdout.split())
    assert broker.llen("episodes") == 0

    status = producer("status", "lm20", "--policy", A, "--policy", B, *SLICE)
    shown = " ".join(status.stdout.split())
    assert status.returncode == 0 and f"{B}: stopped by decided:{A},{B} after round {note['after_round']}" in shown
    assert all(len(line) <= 80 for line in status.stdout.splitlines())

    report = make_report(results, "lm20", None, spec_slice=_slice())
    stop = report["anytime"]["per_policy"][B]["stopped"]
    assert stop["rule"] == note["rule"] and stop["after_round"] == note["after_round"] and not stop["resumed"]
    assert stop["episodes_not_run"] == PER_POLICY - sum(1 for r in ran.values() if r["policy"] == B)
    out = io.StringIO()
    print_report(report, Console(file=out, width=80), top_k=2)
    printed = " ".join(out.getvalue().split())
    assert f"{B}: stopped by decided:{A},{B} after round {note['after_round']} of 20" in printed
    assert f"{stop['episodes_not_run']:,} episodes not run" in printed
    assert all(len(line) <= 80 for line in out.getvalue().splitlines())

    resumed = producer("enqueue", "lm20", "--policy", A, "--policy", B, *SLICE, "--resume-stopped")
    assert f"enqueued {stopped}" in resumed.stdout
    wait_for(lambda: len(records(results)) == 2 * PER_POLICY and queue_is_drained(broker), 180,
             "the resumed slice to finish")
    assert broker.hlen(f"rtbench:stop_notes:{sha}") == 0 and broker.scard(f"rtbench:stopped:{sha}") == 0
    complete = make_report(results, "lm20", None, spec_slice=_slice())
    assert complete["anytime"]["per_policy"][B]["stopped"]["resumed"]
    assert complete["per_policy"][B]["overall"]["progress"] == 1


def test_a_width_rule_stops_each_policy_on_its_own(producer, workers, broker, tmp_path):
    sha = load_spec("lm20").sha256
    sent = producer("enqueue", "lm20", "--policy", B, *SLICE, "--stop-when", "width<0.9")
    assert sent.returncode == 0, sent.stderr
    workers()
    wait_for(lambda: broker.hlen(f"rtbench:stop_notes:{sha}") == 1 and queue_is_drained(broker), 180,
             "the slice to stop")
    note = json.loads(broker.hget(f"rtbench:stop_notes:{sha}", B))
    assert note["policies"] == [B] and note["after_round"] < 20
    assert "widest setting" in note["detail"]


def test_bad_rules_are_refused_before_anything_is_sent(producer, broker):
    for rule, says in [("width<2", "between 0 and 1"), ("decided:feedback", "two different policies"),
                       (f"decided:{A},other", "other not enqueued here"), ("faster", "not a rule")]:
        refused = producer("enqueue", "lm20", "--policy", A, *SLICE, "--stop-when", rule)
        assert refused.returncode == 2 and says in " ".join(refused.stderr.split()), refused.stderr
    assert broker.llen("episodes") == 0 and not broker.keys("rtbench:stop_rules:*")


def _slice():
    from benchmark.spec.slicing import SpecSlice

    return SpecSlice(settings=("bias_lm_always_on", "scale_lm_always_on"), tasks=("adjust_bottle", "click_bell"),
                     max_repeat=20)


def test_producer_run_stops_with_the_rule_and_says_so(tmp_path, plugin_path):
    """The embedded default: ``producer run --stop-when`` ends once the rule stopped the slice,
    says why, and running it again sends nothing until --resume-stopped."""
    env = embedded_run_env(tmp_path, plugin_path)

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "producer", "run", "lm20", "--policy", A, "--policy", B, *SLICE,
                               "--workers", "2", *extra], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)

    first = run("--stop-when", f"decided:{A},{B}")
    assert first.returncode == 0, first.stderr[-3000:]
    said = " ".join(first.stderr.split())
    assert f"{A}: stopped by decided:{A},{B} after round" in said
    ran = len(records(tmp_path / "results"))
    assert 0 < ran < 2 * PER_POLICY
    again = run()
    assert again.returncode == 0 and "enqueued 0" in again.stderr and len(records(tmp_path / "results")) == ran
    resumed = run("--resume-stopped")
    assert resumed.returncode == 0 and len(records(tmp_path / "results")) == 2 * PER_POLICY
