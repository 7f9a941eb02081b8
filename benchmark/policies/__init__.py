"""Policy adapters by name: built-ins first, then the ``rtbench.policies`` entry-point group.

A third-party policy registers itself without any change to rtbench::

    [project.entry-points."rtbench.policies"]
    Motus = "my_package.motus:MotusAdapter"

May import: ``benchmark.common``, ``benchmark.spec``, ``benchmark.records`` and the backends'
interface (``benchmark.backends.base``); never runs or anything above ``benchmark``.
"""

from __future__ import annotations

from benchmark.common.errors import BenchmarkError
from benchmark.common.plugins import available, load_class
from benchmark.policies.base import PolicyAdapter
from benchmark.policies.policies_file import PoliciesFile, WorkerSlot, import_adapter
from benchmark.policies.wrapped import instantiate

BUILTIN_POLICIES = {
    "expert_replay": "benchmark.policies.expert_replay:ExpertReplayPolicy",
    "feedback": "benchmark.policies.feedback:FeedbackPolicy",
    "robotwin_deploy": "benchmark.policies.deploy_policy:DeployPolicyAdapter",
}
ENTRY_POINT_GROUP = "rtbench.policies"


class PolicyError(BenchmarkError):
    """A policy that cannot be found or loaded."""


def available_policies() -> list[str]:
    return available(BUILTIN_POLICIES, ENTRY_POINT_GROUP)


def policy_class(name: str) -> type[PolicyAdapter]:
    """The adapter class registered under ``name``; the error names the known policies."""
    return load_class(name, BUILTIN_POLICIES, ENTRY_POINT_GROUP, PolicyAdapter, ("policy", "policies"), PolicyError)


def load_policy(name: str, config: dict | None = None, device: str = "cpu",
                policies_file: PoliciesFile | None = None, slot: WorkerSlot | None = None) -> PolicyAdapter:
    """The adapter for results folder ``name``, loaded on ``device``: the policies file's entry
    (its adapter and YAML configuration, placeholders filled for the worker's GPU ``slot``) when
    it has one, else the registered policy with ``config``. Adapters with today's one-argument
    ``load(config)`` are wrapped, not rewritten."""
    if policies_file is not None and name in policies_file.entries:
        entry = policies_file.entries[name]
        cls = import_adapter(entry) if entry.import_path else policy_class(entry.adapter)
        return instantiate(cls, name, entry.config(slot=slot), device)
    return instantiate(policy_class(name), name, dict(config or {}), device)


def check_policies_file(policies_file: PoliciesFile, slot: WorkerSlot | None = None) -> None:
    """A worker's (or runner's) check at start: raises ``PoliciesFileError`` naming the entry
    (``slot``: what placeholders are filled with; None: a process without a GPU slot)."""
    policies_file.check(available_policies(), slot)  # registered names only: nothing of theirs imported
