"""Import hygiene, checked in fresh interpreters (DESIGN.md: arrows point down, light modules stay light)."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import benchmark

HEAVY = ("torch", "celery", "redis", "kombu")
LIGHT_MODULES = ["benchmark", "benchmark.spec", "benchmark.results", "benchmark.episodes",
                 "benchmark.perturbation", "benchmark.spec_generator", "benchmark.runner", "reporting",
                 "reporting.aggregate", "reporting.cli", "worker", "producer"]


def test_worker_app_and_producer_import_no_torch_and_connect_to_nothing():
    for module in ("worker.app", "producer.enqueue", "worker.queue.publish"):
        loaded = fresh_import(module)
        assert "torch" not in loaded, module
    code = ("import socket; socket.socket.connect = lambda *a: (_ for _ in ()).throw(AssertionError('connect')); "
            "import worker.app, worker.queue.publish")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def fresh_import(module: str) -> set[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("heavy", HEAVY)
def test_heavy_packages_are_installed_so_the_check_means_something(heavy):
    assert importlib.metadata.version(heavy), f"{heavy} must be installed for the import checks"


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_light_modules_import_no_torch_celery_or_redis(module):
    loaded = fresh_import(module)
    leaked = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not leaked, f"importing {module} pulled in {leaked[:5]}"


def test_the_three_core_modules_together_stay_light():
    loaded = fresh_import("benchmark.spec, benchmark.results, benchmark.episodes")
    assert not {"torch", "celery", "redis"} & loaded


@pytest.mark.parametrize("module", sorted(m.name for m in pkgutil.walk_packages(benchmark.__path__, "benchmark.")))
def test_every_benchmark_module_imports_alone(module):
    fresh_import(module)


PACKAGES = ("benchmark", "worker", "producer", "reporting")
ROOT = Path(__file__).resolve().parents[2]


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def imported_names(path: Path) -> set[str]:
    """Every module an import statement of ``path`` may name (lazy and TYPE_CHECKING ones too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_producer_uses_only_the_queue_api_and_the_settings_of_the_worker_side():
    for name, path in project_modules().items():
        if name.split(".")[0] != "producer":
            continue
        worker_side = {m for m in imported_names(path) if m.split(".")[0] == "worker"}
        outside = {m for m in worker_side if not m.startswith(("worker.queue", "worker.settings"))}
        assert not outside, f"{name} imports {sorted(outside)}; go through worker.queue"


def test_redis_key_names_live_in_the_key_module_only():
    literal = re.compile(r"rtbench:[a-z_]")
    offenders = [f"{name}: {line.strip()}" for name, path in project_modules().items()
                 if name != "worker.queue.keys"
                 for line in path.read_text().splitlines() if literal.search(line)]
    assert not offenders, offenders


def test_no_import_cycle_in_the_tree():
    modules = project_modules()
    graph = {name: {m for m in imported_names(path) if m in modules and m != name} for name, path in modules.items()}
    visiting, done, cycles = [], set(), []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycles.append([*visiting[visiting.index(name):], name])
            return
        visiting.append(name)
        for dependency in sorted(graph[name]):
            visit(dependency)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)
    assert not cycles, [" -> ".join(cycle) for cycle in cycles]


def test_torch_is_imported_only_by_backends_and_policies():
    owners = ("benchmark.backends", "benchmark.policies")
    importers = sorted(name for name, path in project_modules().items()
                       if "torch" in {m.split(".")[0] for m in imported_names(path)} and not name.startswith(owners))
    assert not importers, importers
