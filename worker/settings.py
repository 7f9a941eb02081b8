"""One typed settings object for workers and producers, read from ``RTBENCH_*`` variables.

Nothing reads the environment at import time: ``Settings.from_env()`` is called when a
worker or producer starts, and every error names the variable and what it expects.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from benchmark.errors import BenchmarkError

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"


class SettingsError(BenchmarkError):
    """An RTBENCH_* variable with a value rtbench cannot use."""


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class Settings:
    broker_url: str = DEFAULT_BROKER_URL
    results_dir: Path = Path("results")
    machine: str = field(default_factory=socket.gethostname)
    device: str | None = None            # "cpu", "cuda", "cuda:N"; None: a leased GPU, else cpu
    gpu: int | None = None               # pin this GPU index instead of leasing one
    gpu_lock_dir: Path = Path("/tmp/rtbench-gpu-locks")  # shared by the machine's containers
    backend: str = "kinematic"
    skip_expert_check: bool = False
    episode_timeout_s: float = 3600.0    # soft time limit of one episode
    hard_timeout_margin_s: float = 120.0  # hard limit = soft + this (cleanup after the soft one)
    visibility_margin_s: float = 300.0   # visibility timeout = hard limit + this
    max_attempts: int = 3
    max_tasks_per_child: int = 100
    claim_ttl_s: float = 60.0            # a running episode's claim expires this long after its last heartbeat
    queues: tuple[str, ...] = ("episodes",)
    preload_specs: tuple[str, ...] = ()  # loaded once in the worker's main process, inherited by children
    unacked_restore_interval_s: float = 10.0
    # SIGTERM (docker stop) lets the episode in flight run this long, then sends it back to
    # the queue; keep it below the container's stop grace period.
    shutdown_grace_s: float = 5.0
    # A worker whose results folder cannot be written stops taking episodes and looks again
    # this often.
    blocked_probe_s: float = 30.0

    @property
    def hard_time_limit_s(self) -> float:
        return self.episode_timeout_s + self.hard_timeout_margin_s

    @property
    def visibility_timeout_s(self) -> float:
        # Above the hard time limit: a message is never handed to a second worker while the
        # first may still legitimately be running it.
        return self.hard_time_limit_s + self.visibility_margin_s

    @property
    def block_ttl_s(self) -> float:
        """How long a blocked worker's notice outlives its last probe (it vanishes with a dead worker)."""
        return 3 * self.blocked_probe_s + 30

    @property
    def defer_delay_s(self) -> float:
        """How long a delivery that found the episode claimed waits before it looks again."""
        return self.claim_ttl_s * 1.5

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict = {}

        def get(name: str) -> str | None:
            value = env.get(f"RTBENCH_{name}")
            return value if value not in (None, "") else None

        if (url := get("BROKER_URL")) is not None:
            scheme = urlsplit(url).scheme
            if scheme not in ("redis", "rediss"):
                raise SettingsError(f"RTBENCH_BROKER_URL={redact_url(url)!r}: expected a redis:// or rediss:// URL")
            values["broker_url"] = url
        for name, key in (("RESULTS_DIR", "results_dir"), ("GPU_LOCK_DIR", "gpu_lock_dir")):
            if (value := get(name)) is not None:
                values[key] = Path(value)
        for name, key in (("MACHINE", "machine"), ("BACKEND", "backend")):
            if (value := get(name)) is not None:
                values[key] = value
        if (device := get("DEVICE")) is not None:
            if not (device in ("cpu", "cuda") or device.startswith("cuda:")):
                raise SettingsError(f"RTBENCH_DEVICE={device!r}: expected cpu, cuda or cuda:N")
            values["device"] = device
        if (queues := get("QUEUES")) is not None:
            values["queues"] = tuple(q.strip() for q in queues.split(",") if q.strip())
            if not values["queues"]:
                raise SettingsError("RTBENCH_QUEUES: expected comma-separated queue names")
        if (specs := get("PRELOAD_SPECS")) is not None:
            values["preload_specs"] = tuple(ref.strip() for ref in specs.split(",") if ref.strip())
        if (flag := get("SKIP_EXPERT_CHECK")) is not None:
            if flag.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise SettingsError(f"RTBENCH_SKIP_EXPERT_CHECK={flag!r}: expected 1/0, true/false or yes/no")
            values["skip_expert_check"] = flag.lower() in ("1", "true", "yes")
        for name, key, minimum in (("GPU", "gpu", 0), ("MAX_ATTEMPTS", "max_attempts", 1),
                                   ("MAX_TASKS_PER_CHILD", "max_tasks_per_child", 1)):
            if (value := get(name)) is not None:
                values[key] = _number(f"RTBENCH_{name}", value, int, minimum)
        for name, key in (("EPISODE_TIMEOUT", "episode_timeout_s"), ("CLAIM_TTL", "claim_ttl_s"),
                          ("HARD_TIMEOUT_MARGIN", "hard_timeout_margin_s"),
                          ("VISIBILITY_MARGIN", "visibility_margin_s"),
                          ("UNACKED_RESTORE_INTERVAL", "unacked_restore_interval_s"),
                          ("BLOCKED_PROBE_INTERVAL", "blocked_probe_s")):
            if (value := get(name)) is not None:
                values[key] = _number(f"RTBENCH_{name}", value, float, 1)
        if (value := get("SHUTDOWN_GRACE")) is not None:
            values["shutdown_grace_s"] = _number("RTBENCH_SHUTDOWN_GRACE", value, float, 0)
        return cls(**values)

    def redacted(self) -> dict[str, object]:
        """The settings for a log line, without secrets."""
        shown = {k: getattr(self, k) for k in self.__dataclass_fields__}
        shown["broker_url"] = redact_url(self.broker_url)
        return shown


def _number(variable: str, text: str, kind: type, minimum: float) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise SettingsError(f"{variable}={text!r}: expected {'an integer' if kind is int else 'a number'}") from None
    if value < minimum:
        raise SettingsError(f"{variable}={text!r}: expected at least {minimum}")
    return value
