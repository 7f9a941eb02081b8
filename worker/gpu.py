"""GPU slot leases: ``k`` worker processes per GPU (``RTBENCH_SLOTS_PER_GPU``, default 1),
chosen by the workers themselves.

``docker compose up --scale worker=N`` gives every replica the same GPU list, so each
worker takes an exclusive, non-blocking ``flock`` on one slot lock, ``gpu-<i>.<slot>.lock``,
in a directory shared by the machine's containers and holds it for its lifetime (the kernel
frees it when the process dies). Slot 0 of every GPU is tried before slot 1 of any, so
``--scale worker=8`` on 8 GPUs with two slots each still spreads over all 8. The GPU list
comes from ``CUDA_VISIBLE_DEVICES``, ``NVIDIA_VISIBLE_DEVICES`` or ``nvidia-smi -L``, never
from CUDA in this process: the parent must not initialise CUDA before ``CUDA_VISIBLE_DEVICES``
is narrowed to the leased GPU.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

_NO_GPU_VALUES = {"", "none", "void", "-1"}


def visible_gpus(environ: Mapping[str, str] | None = None,
                 nvidia_smi: Callable[[], list[str]] | None = None) -> list[str]:
    """GPU ids this process may use, in order: the env lists, else ``nvidia-smi -L``."""
    env = os.environ if environ is None else environ
    for variable in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"):
        value = env.get(variable)
        if value is None:
            continue
        value = value.strip()
        if value.lower() in _NO_GPU_VALUES:
            return []
        if value.lower() != "all":
            return [part.strip() for part in value.split(",") if part.strip()]
    return (nvidia_smi or _nvidia_smi_indexes)()


def _nvidia_smi_indexes() -> list[str]:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


class GpuLease:
    """An exclusive lock on one slot of one GPU, held until ``release`` or process exit."""

    def __init__(self, gpu: str, slot: int, handle: int, slots_per_gpu: int = 1) -> None:
        self.gpu, self.slot, self._handle, self.slots_per_gpu = gpu, slot, handle, slots_per_gpu

    @property
    def label(self) -> str:
        """``3`` with one slot per GPU, ``3.1`` with several: what worker names show (gpu3.1@machine)."""
        return self.gpu if self.slots_per_gpu == 1 else f"{self.gpu}.{self.slot}"

    def release(self) -> None:
        os.close(self._handle)


def try_lease(lock_dir: Path, gpus: Sequence[str], slots_per_gpu: int = 1) -> GpuLease | None:
    """The first free slot (slot 0 of every GPU first), or None when all are leased."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    for slot in range(slots_per_gpu):
        for gpu in gpus:
            handle = os.open(lock_dir / f"gpu-{gpu}.{slot}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(handle)
                continue
            os.ftruncate(handle, 0)
            os.write(handle, f"{os.getpid()}\n".encode())
            return GpuLease(gpu, slot, handle, slots_per_gpu)
    return None


def lease_gpu(lock_dir: Path, gpus: Sequence[str], *, slots_per_gpu: int = 1, poll_s: float = 1.0,
              log_every_s: float = 60.0, on_wait: Callable[[], None] | None = None) -> GpuLease:
    """Wait (as a hot spare) until one of ``gpus`` is free, saying why once a minute and
    calling ``on_wait`` (the heartbeat) at every look."""
    last_log = float("-inf")
    while True:
        lease = try_lease(lock_dir, gpus, slots_per_gpu)
        if lease is not None:
            return lease
        if on_wait is not None:
            on_wait()
        if time.monotonic() - last_log >= log_every_s:
            log.warning("all %d slots of %d GPUs (%s) are leased by other workers (locks in %s); waiting as a "
                        "hot spare", len(gpus) * slots_per_gpu, len(gpus), ",".join(gpus), lock_dir)
            last_log = time.monotonic()
        time.sleep(poll_s)


def pin(gpu: str) -> None:
    """Make the leased GPU the only one CUDA will see in this process and its children."""
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # indexes mean what nvidia-smi says
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
