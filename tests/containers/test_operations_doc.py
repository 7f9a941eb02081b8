"""docs/operations.md names only services and variables that the compose files have."""

from __future__ import annotations

import re
import shlex

from tests.containers.compose_rules import ROOT, Files

DOC = ROOT / "docs" / "operations.md"
VARIABLE_NAME = re.compile(r"\b(?:RTBENCH|REDIS|FLOWER|COMPOSE)_[A-Z0-9_]+\b")
# Verbs whose every other word is a service; `run` and `exec` take one service, then a command.
ALL_SERVICES = {"up", "stop", "start", "restart", "logs", "ps", "build", "pull", "rm", "down", "kill"}
ONE_SERVICE = {"run", "exec"}
OPTIONS_WITH_VALUE = {"--scale", "--index", "--timeout", "-t", "-e", "--env", "-u", "--user", "-w", "--entrypoint"}


def compose_commands(text: str) -> list[list[str]]:
    """The words after `docker compose` / `docker-compose` in every command the doc shows."""
    commands = []
    for found in re.finditer(r"docker[ -]compose ([^`\n]+)", text):
        words = shlex.split(found[1].replace("<", "").replace(">", ""))
        commands.append(words)
    return commands


def named_services(words: list[str]) -> list[str]:
    if not words or words[0] not in ALL_SERVICES | ONE_SERVICE:
        return []
    services, skip = [], False
    for word in words[1:]:
        if skip:
            skip = False
            if "=" in word:  # --scale worker=8
                services.append(word.split("=")[0])
            continue
        if word.startswith("-"):
            skip = word in OPTIONS_WITH_VALUE
            continue
        services.append(word)
        if words[0] in ONE_SERVICE:
            break
    return services


def test_every_service_the_doc_names_exists() -> None:
    files = Files.load()
    known = set(files.services())
    commands = compose_commands(DOC.read_text(encoding="utf-8"))
    named = {service for words in commands for service in named_services(words)}
    assert {"redis", "flower", "worker", "sync", "producer", "report"} <= named  # the doc covers them
    assert named - known == set(), f"docs/operations.md names services compose.yaml lacks: {named - known}"


def test_every_variable_the_doc_names_exists() -> None:
    compose_text = "".join((ROOT / name).read_text(encoding="utf-8") for name in ("compose.yaml", "compose.gpu.yaml"))
    env_example = (ROOT / ".env.example").read_text(encoding="utf-8")
    named = set(VARIABLE_NAME.findall(DOC.read_text(encoding="utf-8")))
    assert {"REDIS_PASSWORD", "FLOWER_BASIC_AUTH", "RTBENCH_DEPLOY_KEY", "COMPOSE_FILE"} <= named
    unknown = {name for name in named if not re.search(rf"\b{name}\b", compose_text)
               and not re.search(rf"^{name}=", env_example, re.MULTILINE)}
    assert unknown == set(), f"docs/operations.md names variables the compose files lack: {unknown}"


def test_the_doc_check_catches_a_wrong_name() -> None:
    assert named_services(shlex.split("up -d workers --scale worker=8")) == ["workers", "worker"]
    assert named_services(shlex.split("run --rm producer enqueue lm20 --policy Motus")) == ["producer"]
    assert named_services(shlex.split("exec --index 2 worker python -m worker.heartbeat")) == ["worker"]
