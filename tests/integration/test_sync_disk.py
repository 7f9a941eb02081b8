"""A full disk during a sync cycle, at several fill levels, on a small tmpfs that the test mounts
in a private mount namespace (``unshare``: nothing outlives the test): the cycle finishes or
stops with one line, never leaves the clone off its branch or mid-operation, and the first cycle
after space is freed pushes everything, including what another machine pushed meanwhile."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_sync import machine, remote, remote_records  # noqa: F401

SCENARIO = Path(__file__).with_name("disk_full_scenario.py")
ROOT = Path(__file__).resolve().parents[2]


def in_namespace(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``disk_full_scenario.py`` with a 6 MiB tmpfs at ``tmp_path/disk``, in a mount namespace
    of its own (root's, or a user namespace's where the test is not root)."""
    disk = tmp_path / "disk"
    disk.mkdir(exist_ok=True)
    unshare = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--user", "--map-root-user", "--mount"]
    script = (f'mount -t tmpfs -o size=6m tmpfs "{disk}" && exec "{sys.executable}" "{SCENARIO}" "{disk}" '
              + " ".join(f'"{a}"' for a in args))
    return subprocess.run([*unshare, "sh", "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)


@pytest.fixture
def namespaces(tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is needed to mount a private tmpfs")
    probe = subprocess.run(["unshare", "--mount", "true"] if os.geteuid() == 0 else
                           ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode().strip()}")


# Bytes left free when the cycle starts, from none to plenty: the cycle runs out in the fetch,
# while the pull writes files, in the index, the commit's pack, the push, or not at all. The
# last run keeps a minimum of 4 MiB, so the cycle stops before it writes anything.
LEVELS = [(k << 10, 0) for k in (0, 64, 160, 224, 256, 288, 320, 352, 416, 512, 640, 1024)] + [(1 << 20, 4 << 20)]


@pytest.mark.parametrize(("free", "min_free"), LEVELS)
def test_a_full_disk_stops_the_cycle_cleanly_and_the_next_finishes(tmp_path, remote, namespaces, free,  # noqa: F811
                                                                   min_free):
    beta = machine(tmp_path, remote, "beta")
    done = in_namespace(tmp_path, str(remote), str(beta.results_dir), str(free), str(min_free))
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads(done.stdout.strip().splitlines()[-1])
    first = state["first"]
    assert "\n" not in first and "Traceback" not in done.stderr, done.stderr[-3000:]
    if first.startswith(("DiskFull", "SyncError")):
        assert first.startswith("DiskFull: the disk of"), first  # said as what it is
        assert "free space" in first
    if min_free:
        assert first.startswith("DiskFull") and "the sync needs 4 MiB" in first
    assert state["head"] == "main"  # never detached, never mid-rebase
    assert state["leftovers"] == []  # crash reports, temporary packs, locks: cleared by the next cycle
    print(free, min_free, state["first"])
    wanted = {f"results/{p}/bias_lm_always_on/click_bell/episode_{r}.json" for p in ("A", "B") for r in
              range(40 if p == "A" else 30)}
    assert remote_records(remote) == wanted
    assert set(state["alpha_has"]) == wanted  # beta's records pulled into alpha's work tree
