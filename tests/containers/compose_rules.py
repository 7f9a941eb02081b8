"""The project's own rules for compose.yaml, compose.gpu.yaml and docker/Dockerfile.

The compose-spec schema says whether a file is valid compose; these say whether it is safe
and does what rtbench needs. Each rule takes the loaded files and returns its problems (an
empty list: the rule holds); tests/containers/test_compose_rules.py runs them on the real files
and shows each one failing on a planted defect.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|AUTH|PRIVATE|(^|_)KEY($|_)")
URL_PASSWORD = re.compile(r"://[^/@\s]*:(?P<password>[^@/\s]+)@")
# Variables without which a machine must not start: credentials and the results clone.
REQUIRED = ("REDIS_PASSWORD", "FLOWER_BASIC_AUTH", "RTBENCH_RESULTS_CLONE", "RTBENCH_DEPLOY_KEY")
ONE_SHOT_PROFILES = {"tools"}  # `docker compose run --rm` services: no health check needed


@dataclass
class Files:
    compose: dict[str, Any]
    gpu: dict[str, Any]
    dockerfile: str

    @classmethod
    def load(cls, root: Path = ROOT) -> Files:
        return cls(yaml.safe_load((root / "compose.yaml").read_text(encoding="utf-8")),
                   yaml.safe_load((root / "compose.gpu.yaml").read_text(encoding="utf-8")),
                   (root / "docker" / "Dockerfile").read_text(encoding="utf-8"))

    def services(self) -> dict[str, dict[str, Any]]:
        return self.compose.get("services") or {}


def strings(node: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string in a YAML tree, with where it is."""
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from strings(value, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from strings(value, f"{where}[{index}]")


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def default_of(value: str) -> str:
    """``value`` with each variable replaced by its default (what compose uses when unset)."""
    return VARIABLE.sub(lambda m: m["arg"] if m["op"] in (":-", "-") else "", value)


def healthchecks(files: Files) -> list[str]:
    """Every long-running service has a health check (one-shot `tools` services need none)."""
    problems = []
    for name, service in files.services().items():
        if ONE_SHOT_PROFILES & set(service.get("profiles") or []):
            continue
        check = service.get("healthcheck") or {}
        if check.get("disable") or not check.get("test") or check["test"] in (["NONE"], "NONE"):
            problems.append(f"service {name}: no healthcheck (it runs for days; operators must see it fail)")
    return problems


def pinned_images(files: Files) -> list[str]:
    """Images (and image build arguments) name a version: a tag, never `latest` or none."""
    problems = []
    for name, service in files.services().items():
        candidates = [("image", service.get("image", ""))]
        args = (service.get("build") or {}).get("args") or {}
        candidates += [(f"build arg {key}", value) for key, value in args.items() if key.endswith("IMAGE")]
        for what, value in candidates:
            image = default_of(str(value or ""))
            if not image:
                continue
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if "@sha256:" not in image and (not tag or tag == "latest"):
                problems.append(f"service {name}: {what} {image!r} is not pinned to a version")
    for match in re.finditer(r"^ARG (\w*IMAGE)=(\S+)", files.dockerfile, re.MULTILINE):
        tag = match[2].rsplit("/", 1)[-1].partition(":")[2]
        if not tag or tag == "latest":
            problems.append(f"Dockerfile: ARG {match[1]}={match[2]} is not pinned to a version")
    return problems


def secrets_from_variables(files: Files) -> list[str]:
    """No secret written into `environment`: a secret comes from a required variable
    (`${VAR:?message}`), so it lives in .env, not in the file, and a missing one stops compose."""
    problems = []
    for name, service in files.services().items():
        for key, value in environment(service).items():
            if (url := URL_PASSWORD.search(value)) is not None:
                secret = url["password"]
            elif SECRET_NAME.search(key) and not value.startswith("/run/secrets/"):
                secret = value
            else:
                continue
            whole = VARIABLE.fullmatch(secret)
            if whole is None or whole["op"] != ":?":
                shown = secret if VARIABLE.search(secret) else "a literal value (not shown)"
                problems.append(f"service {name}: environment {key} holds a secret that is not a required "
                                f"variable (${{VAR:?message}}): {shown}")
    return problems


def required_variables(files: Files) -> list[str]:
    """Credentials and the results clone are required (`:?`) wherever they are used."""
    problems, seen = [], set()
    for where, text in strings(files.compose, "compose.yaml"):
        for match in VARIABLE.finditer(text):
            if match["name"] in REQUIRED:
                seen.add(match["name"])
                if match["op"] != ":?" or not match["arg"].strip():
                    problems.append(f"{where}: ${{{match['name']}}} must be required with a message "
                                    f"(${{{match['name']}:?...}}), found {match[0]!r}")
    problems += [f"compose.yaml never uses {name} (required)" for name in REQUIRED if name not in seen]
    return problems


def gpu_overlay(files: Files) -> list[str]:
    """compose.gpu.yaml reserves all NVIDIA GPUs for the worker; compose.yaml reserves none (an
    engine without the NVIDIA runtime refuses to start such a service)."""
    problems = []
    worker = (files.gpu.get("services") or {}).get("worker") or {}
    devices = worker.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices") or []
    if not any(device.get("driver") == "nvidia" and device.get("count") == "all"
               and "gpu" in (device.get("capabilities") or []) for device in devices):
        problems.append("compose.gpu.yaml: service worker must reserve devices "
                        "{driver: nvidia, count: all, capabilities: [gpu]}")
    for name, service in files.services().items():
        if "devices" in str(service.get("deploy", {})):
            problems.append(f"compose.yaml: service {name} reserves devices; that belongs in compose.gpu.yaml")
    return problems


def lock_volume(files: Files) -> list[str]:
    """Every worker replica mounts the same named volume at the GPU-lock directory."""
    match = re.search(r"RTBENCH_GPU_LOCK_DIR=(\S+)", files.dockerfile)
    worker = files.services().get("worker") or {}
    lock_dir = environment(worker).get("RTBENCH_GPU_LOCK_DIR") or (match[1] if match else None)
    if lock_dir is None:
        return ["worker: RTBENCH_GPU_LOCK_DIR is set neither in the Dockerfile nor in compose.yaml"]
    named = set(files.compose.get("volumes") or {})
    for volume in worker.get("volumes") or []:
        source, _, rest = str(volume).partition(":")
        if rest.partition(":")[0] == lock_dir and source in named:
            return []
    return [f"service worker: no named volume mounted at {lock_dir} (RTBENCH_GPU_LOCK_DIR): replicas would lease "
            "the same GPU"]


def seconds(text: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)?", str(text))
    return sum(float(number) * units[unit or "s"] for number, unit in parts)


def stop_grace(files: Files) -> list[str]:
    """docker waits longer than the worker's soft-shutdown window before it kills a worker."""
    worker = files.services().get("worker") or {}
    window = default_of(environment(worker).get("RTBENCH_SHUTDOWN_GRACE", "")) or "5"
    grace = seconds(worker.get("stop_grace_period", "10s"))
    if grace <= float(window):
        return [f"service worker: stop_grace_period {grace:.0f} s is not above RTBENCH_SHUTDOWN_GRACE "
                f"{window} s: docker would kill episodes inside their shutdown window"]
    return []


def loopback_ports(files: Files) -> list[str]:
    """Published ports listen on 127.0.0.1 unless the operator opts in."""
    problems = []
    for name, service in files.services().items():
        for port in service.get("ports") or []:
            if default_of(str(port)).split(":")[0] != "127.0.0.1":
                problems.append(f"service {name}: port {port!r} is not bound to 127.0.0.1 by default")
    return problems


def build_defaults_match(files: Files) -> list[str]:
    """compose.yaml's build-argument defaults are the Dockerfile's (one pinned version each)."""
    declared = dict(re.findall(r"^ARG (\w+)=(\S*)", files.dockerfile, re.MULTILINE))
    problems = []
    for name, service in files.services().items():
        for key, value in ((service.get("build") or {}).get("args") or {}).items():
            if key in declared and default_of(str(value)) != declared[key]:
                problems.append(f"service {name}: build arg {key} defaults to {default_of(str(value))!r}, "
                                f"the Dockerfile to {declared[key]!r}")
    return problems


def compose_v1_compatible(files: Files) -> list[str]:
    """docker-compose 1.29 rejects a top-level `name:`."""
    return ["compose.yaml: top-level `name:` breaks docker-compose 1.29"] if "name" in files.compose else []


RULES: dict[str, Callable[[Files], list[str]]] = {rule.__name__: rule for rule in (
    healthchecks, pinned_images, secrets_from_variables, required_variables, gpu_overlay, lock_volume,
    stop_grace, loopback_ports, build_defaults_match, compose_v1_compatible)}
