"""What checking a stop rule costs a worker (issue 27), on the whole lm20 spec (10 settings x
50 tasks x 20 repeats) for each of two policies, 19 rounds finished, rule `decided:A,B`.

A check (``worker/stop_check.py``) reads the slice's outcomes from Redis and evaluates the
rule; it runs on the finisher thread, off the episode's critical path, at most every 2 s a
process and only once a round may have completed. Baseline in the same run: marking one
batch of 10 records of a policy without a rule finished (``QueueState.mark_finished``, the
finisher's own round trip); against it, the same for a policy with a rule, whose outcomes
the same script notes. A real Redis server (the embedded one, started here).

    .venv/bin/python tests/perf/perf_stop_check.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmark.spec.spec_file import load_spec
from producer.embedded import EmbeddedRedis
from producer.stop_when import set_stop_rule
from reporting.stop_rule import parse_stop_rule
from worker.queue.state import QueueState, connect
from worker.queue.stop_rules import StopRules
from worker.stop_check import StopCheck

A, B = "A", "B"


def timed(action, repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    spec = load_spec("lm20")
    rounds_done = spec.repeats - 1
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedRedis(Path(folder) / "redis").start()
        try:
            client = connect(server.url)
            state, rules = QueueState(client), StopRules(client)
            set_stop_rule(state, spec, [A, B], parse_stop_rule(f"decided:{A},{B}", [A, B]), "episodes",
                          Path(folder) / "results")
            slots = [f"{s.id}/{t}" for s in spec.settings for t in spec.tasks]
            # Nearly equal policies: the rule does not hold, so every timed check is a whole one.
            outcomes = [(f"{p}/{slot}/episode_{r}", str((r + i + (p == B)) % 2))
                        for r in range(rounds_done) for p in (A, B) for i, slot in enumerate(slots)]
            for start in range(0, len(outcomes), 5000):
                rules.note_outcomes(spec.sha256, outcomes[start:start + 5000])
            check = StopCheck(rules, Path(folder) / "results", "perf")
            rule = rules.rule(spec.sha256, A)
            check_s = timed(lambda: check.check(spec.sha256, A, rule))
            plain = [(spec.sha256, f"C/{slot}/episode_0", None, True, None, "1") for slot in slots[:10]]
            ruled = [(spec.sha256, f"{A}/{slot}/episode_{rounds_done}", None, True, None, "1") for slot in slots[:10]]
            mark_s = timed(lambda: state.mark_finished(plain))
            note_s = timed(lambda: state.mark_finished(ruled))
        finally:
            server.stop()
    print(f"lm20, 2 policies x {len(slots):,} slots x {spec.repeats} repeats, {rounds_done} rounds finished")
    print(f"baseline: mark 10 records finished   {mark_s * 1000:8.2f} ms")
    print(f"... of a policy with a rule           {note_s * 1000:8.2f} ms  ({note_s / mark_s:.2f}x)")
    print(f"one stop-rule check (read + evaluate) {check_s * 1000:8.2f} ms  ({check_s / mark_s:.0f}x)")
    print(f"at most one check per 2 s a process:  {check_s / 2.0:.1%} of a finisher thread")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
