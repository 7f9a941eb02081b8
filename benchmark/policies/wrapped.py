"""Adapters as users already have them, run unchanged.

Today's adapters (Motus, Pi0.5, LingBot-VA) are plain classes with a one-argument
``load(config)`` that reads ``config["device"]``, and ``name``/``action_type`` properties.
``WrappedAdapter`` gives such an object rtbench's ``PolicyAdapter`` interface without a change
to it; rtbench's own adapters (``load(config, device)``) are used as they are.
"""

from __future__ import annotations

import inspect
from typing import Any

from benchmark.policies.base import PolicyAdapter


class WrappedAdapter(PolicyAdapter):
    """A one-argument ``load(config)`` adapter; the worker's device goes in ``config["device"]``."""

    def __init__(self, adapter: Any, name: str) -> None:
        self.inner = adapter
        self.name = name  # the results folder; the adapter's own name property may differ
        self.action_type = "qpos"

    def load(self, config: dict[str, Any], device: str) -> None:
        from benchmark.backends.base import ACTION_TYPES  # numpy: not at import (producers import this)

        self.inner.load({**config, "device": device})
        action_type = getattr(self.inner, "action_type", "qpos")
        if action_type not in ACTION_TYPES:
            raise ValueError(f"policy {self.name!r}: action_type {action_type!r} is not one of {ACTION_TYPES}")
        self.action_type = action_type

    def reset(self, env: Any, instruction: str | None) -> None:
        self.inner.reset(env, instruction)

    def step(self, env: Any, observation: dict[str, Any]) -> None:
        self.inner.step(env, observation)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()


def takes_device(cls: type) -> bool:
    """Whether ``cls.load`` takes rtbench's ``(config, device)`` rather than today's ``(config)``."""
    try:
        parameters = list(inspect.signature(cls.load).parameters.values())[1:]  # without self
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.name == "device" for p in parameters)


def instantiate(cls: type, name: str, config: dict[str, Any], device: str) -> PolicyAdapter:
    """A loaded adapter of ``cls`` for the results folder ``name``, whichever interface it has."""
    if isinstance(cls, type) and issubclass(cls, PolicyAdapter) and takes_device(cls):
        adapter = cls()
        adapter.load(config, device)  # the device is its own argument
        return adapter
    wrapped = WrappedAdapter(cls(), name)  # config["device"] becomes the worker's device
    wrapped.load(config, device)
    return wrapped
