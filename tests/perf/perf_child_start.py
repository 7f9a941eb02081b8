"""What a fresh pool child imports before it tells Celery it is up (issue 25, point 5), as a
whole process, against ``python -c pass`` in the same run: on the machine as it is, then on
one core shared with four busy loops (a loaded machine). ``RTBENCH_CHILD_START_TIMEOUT``
(worker/settings.py) must stay well above the starved figure.

    .venv/bin/python tests/perf/perf_child_start.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

# The child's warm-up (worker/tasks.py, _warm_up_child) plus the modules a delivery uses.
WARM_UP = ("from benchmark.backends import backend_class; backend_class('kinematic'); "
           "import worker.tasks, worker.delivery")
ROUNDS = 3


def whole_process(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def measure(label: str) -> None:
    baseline = statistics.median(whole_process("pass") for _ in range(ROUNDS))
    warm_up = statistics.median(whole_process(WARM_UP) for _ in range(ROUNDS))
    print(f"{label}: warm-up {warm_up:.2f} s, python -c pass {baseline:.2f} s "
          f"({warm_up / baseline:.0f}x)")


def main() -> None:
    measure("as it is")
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})  # inherited by the children started below
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(4)]
    try:
        measure("one core, 4 busy loops")
    finally:
        for hog in hogs:
            hog.kill()
        os.sched_setaffinity(0, before)


if __name__ == "__main__":
    main()
