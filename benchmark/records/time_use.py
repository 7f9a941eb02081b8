"""Where an episode's time goes, and the sums that status and the report show.

Every record carries ``phases``: seconds of set-up (the scene, its instruction and channel,
closing it), the expert check (its verdict looked up, or the check run), policy calls
(``reset`` and ``step`` less the simulator's part of them), simulator steps (actions,
observations, the success check) and writing (building the record after the rollout; the
record file's own write comes after its ``finished_at`` and is the queue's, not the
episode's). A sum of records gives, per policy and per machine:

- the duty cycle: policy seconds / episode wall seconds (``duration_s``), the share of the
  time a worker slot spends in its policy; the GPU the policy holds idles the rest;
- the set-up share: (set-up + expert check) / wall;
- episodes per GPU-hour: episodes / GPU-hours, a worker of k slots per GPU holding 1/k of its
  GPU while it runs (``worker.slots_per_gpu``); CPU workers count as one device each.

Wall time here is the episodes' own: a worker waiting for the queue is not counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PHASES = ("setup_s", "expert_check_s", "policy_s", "sim_s", "write_s")
# The sums kept per policy and machine, in this order (Redis fields, the report's tally).
SUMS = ("episodes", "wall_s", "gpu_s", *PHASES)


def episode_sums(record: Mapping[str, Any]) -> tuple[float, ...] | None:
    """The record's contribution to ``SUMS``; None for a record without phases (older ones)."""
    phases, duration = record.get("phases"), record.get("duration_s")
    if not isinstance(phases, dict) or not isinstance(duration, int | float) or isinstance(duration, bool):
        return None
    values = [phases.get(phase) for phase in PHASES]
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and v >= 0 for v in values):
        return None
    worker = record.get("worker") if isinstance(record.get("worker"), dict) else {}
    slots = worker.get("slots_per_gpu", 1)
    share = 1.0 / slots if isinstance(slots, int) and not isinstance(slots, bool) and slots >= 1 else 1.0
    return (1.0, float(duration), float(duration) * share, *map(float, values))


def add_sums(sums: list[float], values: Sequence[float], sign: int = 1) -> None:
    """Add (sign 1) or take away (sign -1) one episode's ``SUMS`` in place."""
    for i, value in enumerate(values):
        sums[i] += sign * value


def machine_of(record: Mapping[str, Any]) -> str:
    worker = record.get("worker")
    machine = worker.get("machine") if isinstance(worker, dict) else None
    return machine if isinstance(machine, str) and machine else "unknown"


@dataclass
class TimeUse:
    """Sums of ``SUMS`` over some episodes."""

    sums: list[float] = field(default_factory=lambda: [0.0] * len(SUMS))

    def add(self, values: Sequence[float], sign: int = 1) -> None:
        add_sums(self.sums, values, sign)

    def __getitem__(self, name: str) -> float:
        return self.sums[SUMS.index(name)]

    @property
    def episodes(self) -> int:
        return round(self["episodes"])

    def share(self, *phases: str) -> float | None:
        wall = self["wall_s"]
        return sum(self[phase] for phase in phases) / wall if wall > 0 else None

    @property
    def episodes_per_gpu_hour(self) -> float | None:
        gpu_s = self["gpu_s"]
        return self["episodes"] / gpu_s * 3600 if gpu_s > 0 else None

    def summary(self) -> dict[str, Any]:
        """The figures, for JSON: episodes, duty cycle, shares, rate and the raw seconds."""
        return {"episodes": self.episodes, "duty_cycle": _rounded(self.share("policy_s")),
                "setup_share": _rounded(self.share("setup_s", "expert_check_s")),
                "sim_share": _rounded(self.share("sim_s")),
                "episodes_per_gpu_hour": _rounded(self.episodes_per_gpu_hour, 2),
                "seconds": {name: round(self[name], 3) for name in SUMS[1:]}}

    def row(self, name: str) -> list[str]:
        return summary_row(name, self.summary())


ROW_COLUMNS = ["", "episodes", "duty cycle", "set-up", "simulator", "eps/GPU-h"]


def summary_row(name: str, figures: Mapping[str, Any]) -> list[str]:
    """A terminal table row of ``TimeUse.summary()``: name, episodes, duty cycle, set-up,
    simulator, episodes per GPU-hour."""
    rate = figures["episodes_per_gpu_hour"]
    return [name, f"{figures['episodes']:,}", _percent(figures["duty_cycle"]), _percent(figures["setup_share"]),
            _percent(figures["sim_share"]), "-" if rate is None else f"{rate:,.1f}"]


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)
