"""rtbench-report speed and memory on 100,000 generated records (10 policies x the lm20 spec).

Prints, against a baseline measured in the same run (``json.load`` of every file in a loop):
cold time (empty index; target <= 0.5x baseline), warm time with nothing changed (target
<= 0.05x of cold), time after 1% more files (target <= 0.1x of cold), and the peak memory
of each report process (target <= 500 MB).

    .venv/bin/python tests/perf/report.py [--policies 10]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from benchmark.episodes import iter_episodes
from benchmark.results import new_record
from benchmark.spec import load_spec


def generate(root: Path, policies: int, extra: bool = False) -> int:
    """Write records (plain writes: generation speed is not what is measured). 1% of the
    episodes (by a hash of their id) are left out, and written as new files with ``extra``."""
    spec = load_spec("lm20")
    count = 0
    for p in range(policies):
        for key in iter_episodes(spec, f"policy{p:02d}"):
            if extra != (zlib.crc32(key.id.encode()) % 100 == 0):
                continue
            rng = random.Random(key.id)
            error = "eval_error: RuntimeError: x" if rng.random() < 0.03 else None
            record = new_record(key, success=error is None and rng.random() < 0.6, error=error, steps=100, seed=1,
                                perturbation_log={"config": spec.config(key.setting_id, key.task, key.repeat_idx)},
                                spec_name="lm20", spec_sha256=spec.sha256, backend="kinematic", started_at="t",
                                finished_at="t", duration_s=1.0)
            path = key.result_path(root)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, indent=2))
            count += 1
    return count


def baseline(root: Path) -> float:
    start = time.perf_counter()
    count = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.endswith(".json"):
                with open(os.path.join(dirpath, name)) as handle:
                    json.load(handle)
                count += 1
    return time.perf_counter() - start


MEASURE = """
import json, resource, sys, time
from pathlib import Path
from reporting.cli import make_report
start = time.perf_counter()
make_report(Path(sys.argv[1]), "lm20", None, index_path=Path(sys.argv[2]))
print(json.dumps([time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]))
"""


def report(root: Path, index: Path) -> tuple[float, float]:
    """Time of one report through the index, measured inside a fresh process after its imports
    (interpreter start-up is the same with or without an index), and that process's peak RSS in MB."""
    out = subprocess.run([sys.executable, "-c", MEASURE, str(root), str(index)], check=True, capture_output=True,
                         text=True).stdout
    seconds, peak_mb = json.loads(out)
    return seconds, peak_mb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root, index = Path(tmp) / "results", Path(tmp) / "index.sqlite"
        start = time.perf_counter()
        n = generate(root, args.policies)
        os.sync()  # measure on a quiet disk, not against the write-back of what was just generated
        print(f"generated {n:,} records in {time.perf_counter() - start:.0f} s")
        base = baseline(root)
        cold, cold_mb = report(root, index)
        warm, warm_mb = report(root, index)
        added = generate(root, args.policies, extra=True)
        os.sync()
        after, after_mb = report(root, index)
    ok = lambda flag: "ok" if flag else "FAIL"  # noqa: E731
    print(f"baseline json.load loop: {base:.2f} s")
    print(f"cold (empty index):      {cold:.2f} s = {cold / base:.2f}x baseline   "
          f"target <= 0.5x -> {ok(cold / base <= 0.5)}")
    print(f"warm (nothing changed):  {warm:.2f} s = {warm / cold:.3f}x cold   "
          f"target <= 0.05x -> {ok(warm / cold <= 0.05)}")
    print(f"after +{added:,} files:     {after:.2f} s = {after / cold:.3f}x cold   "
          f"target <= 0.1x -> {ok(after / cold <= 0.1)}")
    peak = max(cold_mb, warm_mb, after_mb)
    print(f"peak memory of a report process: {peak:.0f} MB   target <= 500 MB -> {ok(peak <= 500)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
