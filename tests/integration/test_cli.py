"""The command lines as users run them: real processes, real files, exit codes and messages."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from benchmark.spec_generator import spec_bytes

PACKAGES = ("benchmark", "worker", "producer", "reporting")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def click_commands() -> dict[str, tuple[click.Command, list[str]]]:
    """Every click command and subcommand defined in the project: name -> (root command, path)."""
    found: dict[str, tuple[click.Command, list[str]]] = {}

    def walk(root: click.Command, command: click.Command, path: list[str], name: str) -> None:
        found[name] = (root, path)
        for sub_name, sub in getattr(command, "commands", {}).items():
            walk(root, sub, [*path, sub_name], f"{name} {sub_name}")

    for package in PACKAGES:
        for info in pkgutil.walk_packages(importlib.import_module(package).__path__, f"{package}."):
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if isinstance(value, click.Command) and value.callback and value.callback.__module__ == info.name:
                    walk(value, value, [], f"{info.name}:{value.name}")
    return found


def test_every_command_and_subcommand_has_help_with_an_example():
    commands = click_commands()
    entry_points = {"worker.__main__:main", "producer.__main__:cli", "reporting.cli:main",
                    "benchmark.eval_runner:main", "benchmark.verify:main", "benchmark.check_spec:main",
                    "benchmark.spec_generator:main"}
    assert entry_points <= set(commands), sorted(commands)
    assert {"producer.__main__:cli enqueue", "producer.__main__:cli status", "producer.__main__:cli dead",
            "producer.__main__:cli run"} <= set(commands)
    for name, (root, path) in sorted(commands.items()):
        result = CliRunner().invoke(root, [*path, "--help"], prog_name=name)
        assert result.exit_code == 0, (name, result.output)
        assert "Example" in result.output and len(result.output.splitlines()) > 5, (name, result.output)


def test_check_spec_summarises_shipped_specs():
    result = run("benchmark.check_spec", "lm20")
    assert result.returncode == 0, result.stderr
    assert "10,000" in result.stdout and "lm20" in result.stdout


MALFORMED = [
    (["settings", 0, "id"], "bias_lm_always_on", "settings[0].id"),
    (["perturbation_configs", "fir_lm_always_on", "click_bell", 1, "params", "w"], [0.2, 0.2],
     "perturbation_configs.fir_lm_always_on.click_bell[1].params.w"),
    (["perturbation_configs", "coupling_high_always_on", "open_laptop", 0, "params", "M"], [[1.0] * 14] * 13,
     "perturbation_configs.coupling_high_always_on.open_laptop[0].params.M"),
    (["env_seeds", "iir_lm_always_on", "click_bell"], [1], "env_seeds.iir_lm_always_on.click_bell"),
]


@pytest.mark.parametrize(("path", "value", "location"), MALFORMED, ids=[m[2] for m in MALFORMED])
def test_malformed_spec_gives_one_line_and_exit_code_2(small_spec_data, tmp_path, path, value, location):
    target = small_spec_data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    spec_file = tmp_path / "broken.json"
    spec_file.write_bytes(spec_bytes(small_spec_data))
    for args in (["benchmark.check_spec", str(spec_file)],
                 ["benchmark.spec_generator", "--output", str(tmp_path / "out.json"),
                  "--derived-from", str(spec_file), "--repeats", "1"]):
        result = run(*args)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"Error: {spec_file}: {location}: ")
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.json").exists()


def test_non_json_spec_and_bad_generator_inputs_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"master_seed": 4')
    result = run("benchmark.check_spec", str(bad))
    assert result.returncode == 2 and "invalid JSON" in result.stderr and "Traceback" not in result.stderr
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("click_bell\nnot_a_task\n")
    result = run("benchmark.spec_generator", "--output", str(tmp_path / "x.json"), "--tasks-file", str(tasks))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"Error: tasks file {tasks}, line 2: 'not_a_task' is not a RoboTwin "
                                     "benchmark task; give its step limit as 'task step_limit'")


def test_generator_writes_a_loadable_spec_with_chosen_options(tmp_path):
    tasks = tmp_path / "tasks.txt"
    tasks.write_text("click_bell\nmy_task 300\n")
    seeds = tmp_path / "seeds.json"
    seeds.write_text(json.dumps({"click_bell": 11, "my_task": 12}))
    out = tmp_path / "mine.json.gz"
    listed = tmp_path / "listed.txt"
    result = run("benchmark.spec_generator", "--output", str(out), "--repeats", "3", "--severity", "high",
                 "--tasks-file", str(tasks), "--env-seeds", str(seeds), "--master-seed", "9",
                 "--write-tasks-file", str(listed))
    assert result.returncode == 0, result.stderr
    assert "10 settings x 2 tasks x 3 repeats = 60 episodes/policy" in result.stdout
    assert listed.read_text() == "click_bell\nmy_task\n"
    check = run("benchmark.check_spec", str(out))
    assert check.returncode == 0 and "60" in check.stdout
    from benchmark.spec import load_spec
    spec = load_spec(out)
    assert spec.env_seed("bias_high_always_on", "my_task", 2) == 12
    assert spec.step_limit("my_task") == 300
    assert spec.config("bias_high_onset_then_always", "my_task", 0)["t_on_raw"] == 48
