"""The project's rules for the container files hold, and each one catches its defect."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from tests.containers.compose_rules import RULES, Files


@pytest.fixture(scope="module")
def files() -> Files:
    return Files.load()


@pytest.mark.parametrize("rule", RULES)
def test_rule_holds_for_the_repository(files: Files, rule: str) -> None:
    assert RULES[rule](files) == []


def _set(path: str, value: object) -> Callable[[Files], None]:
    """A defect: the compose.yaml value at dotted ``path`` replaced (None: removed)."""

    def plant(files: Files) -> None:
        *parents, last = path.split(".")
        node = files.compose
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value

    return plant


def _gpu_count_one(files: Files) -> None:
    files.gpu["services"]["worker"]["deploy"]["resources"]["reservations"]["devices"][0]["count"] = 1


def _gpu_in_base(files: Files) -> None:
    files.compose["services"]["worker"]["deploy"] = copy.deepcopy(files.gpu["services"]["worker"]["deploy"])


def _tag_in_dockerfile(files: Files) -> None:
    files.dockerfile = files.dockerfile.replace("ARG TOOLS_BASE_IMAGE=debian:12.11-slim",
                                                "ARG TOOLS_BASE_IMAGE=debian:latest")


DEFECTS = {
    "healthchecks": [_set("services.worker.healthcheck", None),
                     _set("services.redis.healthcheck", {"disable": True})],
    "pinned_images": [_set("services.redis.image", "${REDIS_IMAGE:-redis:latest}"),
                      _set("services.redis.image", "redis"), _tag_in_dockerfile],
    "secrets_from_variables": [
        _set("services.flower.environment.FLOWER_BASIC_AUTH", "admin:hunter2"),
        _set("services.flower.environment.RTBENCH_BROKER_URL", "redis://:hunter2@redis:6379/0"),
        _set("services.redis.environment.REDIS_PASSWORD", "${REDIS_PASSWORD:-changeme}")],
    "required_variables": [_set("secrets.deploy_key.file", "${RTBENCH_DEPLOY_KEY:-./id_ed25519}"),
                           _set("services.redis.environment.REDIS_PASSWORD", "${REDIS_PASSWORD}")],
    "gpu_overlay": [_gpu_count_one, _gpu_in_base],
    "lock_volume": [_set("services.worker.volumes", ["/tmp/locks:/run/rtbench/gpu-locks"]),
                    _set("volumes.gpu-locks", None)],
    "stop_grace": [_set("services.worker.stop_grace_period", "10s")],
    "loopback_ports": [_set("services.flower.ports", ["${FLOWER_BIND:-0.0.0.0}:5555:5555"])],
    "build_defaults_match": [_set("services.worker.build.args.TORCH_VERSION", "${RTBENCH_TORCH_VERSION:-2.4.0}")],
    "compose_v1_compatible": [_set("name", "rtbench")],
}


def test_every_rule_has_planted_defects() -> None:
    assert set(DEFECTS) == set(RULES)


@pytest.mark.parametrize(("rule", "index"), [(rule, i) for rule, plants in DEFECTS.items() for i in range(len(plants))])
def test_rule_fails_on_its_planted_defect(files: Files, rule: str, index: int) -> None:
    broken = copy.deepcopy(files)
    DEFECTS[rule][index](broken)
    problems = RULES[rule](broken)
    assert problems, f"{rule} did not notice defect {index}"
    # The defect breaks only its own rule's promise where the rules are independent.
    assert all(isinstance(line, str) and line for line in problems)
