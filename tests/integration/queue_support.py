"""Real Redis servers and real worker processes for the queue tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


class WorkerProcess:
    def __init__(self, process: subprocess.Popen, log: Path) -> None:
        self.process, self.log = process, log

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, timeout: float = 60) -> WorkerProcess:
        wait_for(lambda: " ready." in self.log_text() or self.process.poll() is not None, timeout,
                 f"worker {self.pid} to be ready")
        assert self.process.poll() is None, self.log_text()[-3000:]
        return self

    def pool_child(self, timeout: float = 30) -> int:
        return wait_for(lambda: (children(self.pid) or [None])[0], timeout, "the worker's pool child")

    def kill_tree(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(10)


def start_worker(env: dict[str, str], log: Path, *args: str) -> WorkerProcess:
    handle = open(log, "ab")  # noqa: SIM115 - the child writes to it
    process = subprocess.Popen([sys.executable, "-m", "worker", *args], env={**os.environ, **env},
                               stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    handle.close()
    return WorkerProcess(process, log)


def queue_is_drained(client: redis.Redis, queue: str = "episodes") -> bool:
    return client.llen(queue) == 0 and client.hlen("unacked") == 0


def records(results: Path) -> dict[str, dict]:
    return {str(p.relative_to(results).with_suffix("")): json.loads(p.read_text())
            for p in sorted(results.rglob("episode_*.json"))}


def message(episode_id: str, spec: str = "lm20"):
    from benchmark.records.episodes import EpisodeKey
    from benchmark.spec.spec_file import load_spec
    from worker.queue.messages import EpisodeMessage

    return EpisodeMessage(EpisodeKey.parse(episode_id), spec, load_spec(spec).sha256)


def done_count(client: redis.Redis, spec: str = "lm20") -> int:
    from benchmark.spec.spec_file import load_spec

    return client.scard(f"rtbench:done:{load_spec(spec).sha256}")


def dead_letters(client: redis.Redis) -> list[dict]:
    return [json.loads(item) for item in client.lrange("rtbench:dead", 0, -1)]


def restore_default_signals() -> None:
    """A ``preexec_fn``: the child handles the stop signals by default, whatever this process
    inherited (a suite started in the background inherits SIGINT as ignored, and Python keeps
    an ignored SIGINT ignored: Ctrl-C tests would then wait in vain)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_DFL)


def embedded_run_env(tmp_path: Path, plugin_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``producer run`` test: its own results and GPU locks, the test
    plugin importable, no external broker (the run starts its own)."""
    env = {**os.environ, "RTBENCH_RESULTS_DIR": str(tmp_path / "results"),
           "RTBENCH_GPU_LOCK_DIR": str(tmp_path / "locks"),
           "PYTHONPATH": os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")]), **extra}
    env.pop("RTBENCH_BROKER_URL", None)
    return env


def counters_agree(producer, policy: str, spec: str = "lm20") -> None:
    """``producer status --verify``: the counters status reads equal the sets they summarise."""
    checked = producer("status", spec, "--policy", policy, "--verify")
    assert checked.returncode == 0, checked.stderr
    assert "verified: the counters agree with the sets" in checked.stdout, checked.stdout
