"""The settings of workers and producers: the shared run settings plus the queue's own.

A process builds them once at its entry point (``Settings.from_env()``, then its flags with
``dataclasses.replace``), hands them to ``use()`` when other parts of the process (the Celery
app, its consumer, the pool children forked from it) need them, and passes them to the
processes it starts through ``to_env()``. Nothing reads the environment at import time, and
every error names the variable and what it expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from benchmark.run.settings import RunSettings, SettingsError, number, read

if TYPE_CHECKING:
    from benchmark.policies.policies_file import WorkerSlot

__all__ = ["Settings", "SettingsError", "active", "check_broker_url", "queue_names", "redact_url", "use"]

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***``, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit((parts.scheme, user + netloc, parts.path, parts.query, parts.fragment))


def check_broker_url(url: str, where: str) -> str:
    if urlsplit(url).scheme not in ("redis", "rediss"):
        raise SettingsError(f"{where}={redact_url(url)!r}: expected a redis:// or rediss:// URL")
    return url


def queue_names(text: str, where: str) -> tuple[str, ...]:
    names = _comma_list(text)
    if not names:
        raise SettingsError(f"{where}: expected comma-separated queue names")
    return names


def _comma_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True)
class Settings(RunSettings):
    broker_url: str = DEFAULT_BROKER_URL
    gpu: int | None = None               # pin this GPU index instead of leasing one
    gpu_lock_dir: Path = Path("/tmp/rtbench-gpu-locks")  # shared by the machine's containers
    slots_per_gpu: int = 1               # workers that share one GPU (each leases a slot)
    # The GPU this worker leased (its CUDA_VISIBLE_DEVICES) and its slot there; set by
    # `python -m worker`, not variables.
    leased_gpu: str | None = field(default=None, metadata={"process_local": True})
    leased_slot: int | None = field(default=None, metadata={"process_local": True})
    hard_timeout_margin_s: float = 120.0  # hard limit = soft + this (cleanup after the soft one)
    visibility_margin_s: float = 300.0   # visibility timeout = hard limit + this
    max_tasks_per_child: int = 100
    # A fresh pool child imports the backend (torch, a simulator) before it reports ready;
    # Celery kills one that takes longer than this (its default, 4 s, killed children in a
    # row on a loaded machine: the kinematic warm-up takes 2 s idle, 9.5 s on one core shared
    # with 4 busy processes; docs/performance.md).
    child_start_timeout_s: float = 60.0
    claim_ttl_s: float = 60.0            # a running episode's claim expires this long after its last heartbeat
    # A worker's lease on its policy servers' addresses lapses this long after the worker dies.
    server_lease_ttl_s: float = field(default=60.0, metadata={"env": "server_lease_ttl"})
    queues: tuple[str, ...] = ("episodes",)
    preload_specs: tuple[str, ...] = ()  # loaded once in the worker's main process, inherited by children
    unacked_restore_interval_s: float = 10.0
    # SIGTERM (docker stop) lets the episode in flight run this long, then sends it back to
    # the queue; keep it below the container's stop grace period.
    shutdown_grace_s: float = 5.0
    # A worker whose results folder cannot be written stops taking episodes and looks again
    # this often.
    blocked_probe_s: float = field(default=30.0, metadata={"env": "blocked_probe_interval"})
    # The results sync (python -m worker sync): a cycle this often, these paths of the clone
    # staged too (e.g. reports/), and at most this many pushes a minute across the fleet.
    sync_interval_s: float = field(default=600.0, metadata={"env": "sync_interval"})
    sync_paths: tuple[str, ...] = ()
    sync_pushes_per_minute: int = 4
    # A cycle does not start with less free space than this on the clone's disk (MiB): records
    # need the room more than git does.
    sync_min_free_mb: int = 64
    # Rewritten while the worker is alive, for the container health check (worker/heartbeat.py).
    heartbeat_file: Path | None = None
    # The results sync's ssh key (a compose secret); None: git's own ssh configuration.
    deploy_key_file: Path | None = None

    @property
    def torch_device(self) -> str:
        """The device episodes run on: the one asked for, else the leased GPU, else the CPU."""
        return self.device or ("cuda:0" if self.leased_gpu is not None else "cpu")

    @property
    def worker_slot(self) -> WorkerSlot | None:
        """What the policies file's ``{gpu}``/``{slot}`` stand for here; None without a GPU lease."""
        from benchmark.policies.policies_file import WorkerSlot  # here: producers import settings

        return WorkerSlot.of(self.leased_gpu, self.leased_slot, self.slots_per_gpu)

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
    def values_from_env(cls, env: Mapping[str, str]) -> dict[str, Any]:
        values = super().values_from_env(env)
        if (url := read(env, "BROKER_URL")) is not None:
            values["broker_url"] = check_broker_url(url, "RTBENCH_BROKER_URL")
        if (value := read(env, "GPU_LOCK_DIR")) is not None:
            values["gpu_lock_dir"] = Path(value)
        for name, key in (("HEARTBEAT_FILE", "heartbeat_file"), ("DEPLOY_KEY_FILE", "deploy_key_file")):
            if (value := read(env, name)) is not None:
                values[key] = Path(value)
        if (value := read(env, "QUEUES")) is not None:
            values["queues"] = queue_names(value, "RTBENCH_QUEUES")
        if (value := read(env, "PRELOAD_SPECS")) is not None:
            values["preload_specs"] = _comma_list(value)
        for name, key in (("GPU", "gpu"), ("MAX_TASKS_PER_CHILD", "max_tasks_per_child"),
                          ("SLOTS_PER_GPU", "slots_per_gpu")):
            if (value := read(env, name)) is not None:
                values[key] = number(f"RTBENCH_{name}", value, int, 0 if key == "gpu" else 1)
        for name, key in (("CLAIM_TTL", "claim_ttl_s"), ("HARD_TIMEOUT_MARGIN", "hard_timeout_margin_s"),
                          ("VISIBILITY_MARGIN", "visibility_margin_s"),
                          ("UNACKED_RESTORE_INTERVAL", "unacked_restore_interval_s"),
                          ("BLOCKED_PROBE_INTERVAL", "blocked_probe_s"),
                          ("CHILD_START_TIMEOUT", "child_start_timeout_s")):
            if (value := read(env, name)) is not None:
                values[key] = number(f"RTBENCH_{name}", value, float, 1)
        if (value := read(env, "SERVER_LEASE_TTL")) is not None:  # renewed every ~2 s: 10 s leaves room
            values["server_lease_ttl_s"] = number("RTBENCH_SERVER_LEASE_TTL", value, float, 10)
        if (value := read(env, "SHUTDOWN_GRACE")) is not None:
            values["shutdown_grace_s"] = number("RTBENCH_SHUTDOWN_GRACE", value, float, 0)
        if (value := read(env, "SYNC_INTERVAL")) is not None:
            values["sync_interval_s"] = number("RTBENCH_SYNC_INTERVAL", value, float, 1)
        if (value := read(env, "SYNC_PATHS")) is not None:
            values["sync_paths"] = _comma_list(value)
        if (value := read(env, "SYNC_PUSHES_PER_MINUTE")) is not None:
            values["sync_pushes_per_minute"] = number("RTBENCH_SYNC_PUSHES_PER_MINUTE", value, int, 1)
        if (value := read(env, "SYNC_MIN_FREE_MB")) is not None:
            values["sync_min_free_mb"] = number("RTBENCH_SYNC_MIN_FREE_MB", value, int, 0)
        return values

    @property
    def sync_queue(self) -> str:
        """The queue of this machine's sync task (one sync worker per machine consumes it)."""
        return f"sync.{self.machine}"

    def redacted(self) -> dict[str, object]:
        """The settings for a log line, without secrets."""
        shown = {k: getattr(self, k) for k in self.__dataclass_fields__}
        shown["broker_url"] = redact_url(self.broker_url)
        return shown


_active: Settings | None = None


def use(settings: Settings) -> None:
    """Make ``settings`` this process's settings (and its forked children's)."""
    global _active
    _active = settings


def active() -> Settings:
    """This process's settings: those given to ``use()``, else read from the environment once
    (e.g. in ``celery -A worker.app flower``, which has no rtbench entry point)."""
    if _active is None:
        use(Settings.from_env())
    return _active
