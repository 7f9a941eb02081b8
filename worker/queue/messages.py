"""The episode message: what producers publish and workers accept.

Keyword arguments only: ``episode_id`` (``<policy>/<setting_id>/<task>/episode_<i>``),
``spec`` (alias or path, resolved by the worker) and ``spec_sha256`` (the identity the
worker's spec file must have). The Celery task id is a UUID5 of (spec sha256, episode id).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

from benchmark.episodes import EpisodeKey
from benchmark.errors import InvalidNameError

TASK_RUN_EPISODE = "rtbench.run_episode"  # the Celery task name of an episode message
TASK_VERIFY_UNIT = "rtbench.verify_unit"  # one (setting, task) unit of a verification (worker/verify_task.py)
VERIFY_QUEUE = "verify"                   # the queue of those units
TASK_ID_NAMESPACE = uuid.UUID("5d6f4b8e-3c1a-4f7e-9b2d-8a1c0e6f2b47")
_NAMESPACE_BYTES = TASK_ID_NAMESPACE.bytes


class MalformedMessage(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class EpisodeMessage:
    key: EpisodeKey
    spec_ref: str
    spec_sha256: str

    @property
    def kwargs(self) -> dict[str, str]:
        return {"episode_id": self.key.id, "spec": self.spec_ref, "spec_sha256": self.spec_sha256}

    @property
    def task_id(self) -> str:
        return task_id(self.spec_sha256, self.key.id)


def task_id(spec_sha256: str, episode_id: str) -> str:
    """``uuid5(TASK_ID_NAMESPACE, "<sha>/<id>")``, computed without UUID objects (enqueue is hot)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{spec_sha256}/{episode_id}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def parse_message(args: tuple, kwargs: dict) -> EpisodeMessage:
    """The episode a message names; ``MalformedMessage`` for anything else."""
    if args or not isinstance(kwargs, dict):
        raise MalformedMessage("malformed_message", "expected keyword arguments episode_id, spec, spec_sha256 only")
    missing = [k for k in ("episode_id", "spec", "spec_sha256") if not isinstance(kwargs.get(k), str)]
    if missing:
        raise MalformedMessage("malformed_message", f"missing or non-string fields: {', '.join(missing)}")
    try:
        key = EpisodeKey.parse(kwargs["episode_id"])
    except InvalidNameError as exc:
        raise MalformedMessage("invalid_episode_id", str(exc)) from None
    return EpisodeMessage(key, kwargs["spec"], kwargs["spec_sha256"])
