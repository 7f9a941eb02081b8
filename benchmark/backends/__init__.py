"""Simulator backends: built-in ones by name, then the ``rtbench.backends`` entry-point group.

Backend modules import torch or a simulator, so they are imported only when asked for.
"""

from __future__ import annotations

from benchmark.backends.base import Backend, BackendError
from benchmark.plugins import available, load_class

BUILTIN_BACKENDS = {
    "kinematic": "benchmark.backends.kinematic:KinematicBackend",
}
ENTRY_POINT_GROUP = "rtbench.backends"


def available_backends() -> list[str]:
    return available(BUILTIN_BACKENDS, ENTRY_POINT_GROUP)


def backend_class(name: str) -> type[Backend]:
    """The backend class registered under ``name``; the error names the known backends."""
    return load_class(name, BUILTIN_BACKENDS, ENTRY_POINT_GROUP, Backend, ("backend", "backends"), BackendError)


def default_device() -> str:
    """``cuda:0`` when torch sees a GPU, else ``cpu`` (torch imported here, lazily: backends own it)."""
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"
