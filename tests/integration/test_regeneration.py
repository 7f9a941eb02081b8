"""The shipped spec files regenerate byte for byte from the documented commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.spec.spec_paths import SPEC_DIR


def generate(tmp_path: Path, name: str, *args: str) -> bytes:
    out = tmp_path / name
    subprocess.run([sys.executable, "-m", "benchmark.spec_generator", "--output", str(out), *args],
                   check=True, capture_output=True, timeout=300)
    return out.read_bytes()


def test_lm20_spec_and_task_list_regenerate_byte_for_byte(tmp_path):
    data = generate(tmp_path, "lm20.json", "--repeats", "20", "--severity", "lm", "--derived-from", "full",
                    "--write-tasks-file", str(tmp_path / "tasks.txt"))
    assert data == (SPEC_DIR / "benchmark_spec_lm20.json").read_bytes()
    assert (tmp_path / "tasks.txt").read_bytes() == (SPEC_DIR / "tasks_all.txt").read_bytes()


@pytest.mark.slow
def test_full_spec_regenerates_byte_for_byte(tmp_path):
    data = generate(tmp_path, "x.json.gz", "--repeats", "50")
    assert data == (SPEC_DIR / "benchmark_spec.json.gz").read_bytes()
