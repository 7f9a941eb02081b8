"""The command lines as users run them: real processes, real files, exit codes and messages."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from benchmark.records.episodes import EpisodeKey
from benchmark.records.results import new_record, write_record
from benchmark.spec.generator import spec_bytes
from producer.__main__ import cli as producer_cli

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
    entry_points = {"worker.__main__:main", "producer.cli:cli", "reporting.cli:main",
                    "benchmark.run.eval_runner:main", "benchmark.verify.labels:main", "benchmark.spec.check:main",
                    "benchmark.spec.generator:main"}
    assert entry_points <= set(commands), sorted(commands)
    assert {"producer.cli:cli enqueue", "producer.cli:cli status", "producer.cli:cli dead",
            "producer.cli:cli run"} <= set(commands)
    for name, (root, path) in sorted(commands.items()):
        result = CliRunner().invoke(root, [*path, "--help"], prog_name="python -m prog", terminal_width=80)
        assert result.exit_code == 0, (name, result.output)
        assert "Example" in result.output and len(result.output.splitlines()) > 5, (name, result.output)
        # 80 columns: no line wraps in a terminal, no command summary cut by click ("by...").
        assert all(len(line) <= 80 for line in result.output.splitlines()), (name, result.output)
        cut = [line for line in result.output.splitlines()[1:] if re.search(r"\w\.\.\.$", line)]
        assert not cut, (name, cut)  # (the usage line's "SPEC..." is click's notation, not a cut)


def test_check_spec_summarises_shipped_specs():
    result = subprocess.run([sys.executable, "-m", "benchmark.check_spec", "lm20", "full", "verified", "--settings"],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert "10,000" in result.stdout and "lm20" in result.stdout
    assert "…" not in result.stdout and "coupling_high_onset_then_always" in result.stdout  # nothing cut
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout


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
    assert result.returncode == 2 and "not valid JSON at line" in result.stderr and "Traceback" not in result.stderr
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
    from benchmark.spec.spec_file import load_spec
    spec = load_spec(out)
    assert spec.env_seed("bias_high_always_on", "my_task", 2) == 12
    assert spec.step_limit("my_task") == 300
    assert spec.config("bias_high_onset_then_always", "my_task", 0)["t_on_raw"] == 48


def test_one_filter_vocabulary_for_every_command_that_selects_episodes():
    commands = click_commands()
    selecting = ["producer.cli:cli enqueue", "producer.cli:cli status", "producer.cli:cli run",
                 "benchmark.run.eval_runner:main", "reporting.cli:main"]
    seen = {}
    for name in selecting:
        root, path = commands[name]
        command = root
        for part in path:
            command = command.commands[part]
        options = {opt: param for param in command.params for opt in param.opts}
        for flag in ("--settings", "--tasks", "--max-repeat", "--policy"):
            assert flag in options, (name, flag)
            if flag != "--policy":  # required by the runners, optional for status and reports
                seen.setdefault(flag, set()).add((options[flag].help, options[flag].metavar))
    assert all(len(variants) == 1 for variants in seen.values()), seen


def test_group_options_are_accepted_after_the_subcommand(tmp_path):
    results = tmp_path / "results"
    done = EpisodeKey("feedback", "bias_lm_always_on", "click_bell", 0)
    write_record(results, new_record(done, success=True, error=None, steps=1, seed=1, perturbation_log=None,
                                     spec_name="lm20", spec_sha256="0" * 64, backend="kinematic", started_at="t",
                                     finished_at="t", duration_s=1.0))
    # No broker is reachable here: the error names the URL given after the subcommand, so it was used.
    after = CliRunner().invoke(producer_cli, ["status", "lm20", "--policy", "feedback", "--results-dir",
                                              str(results), "--broker-url", "redis://127.0.0.1:9/0"])
    assert after.exit_code == 2 and "127.0.0.1:9" in after.output, after.output
    file_given = CliRunner().invoke(producer_cli, ["dead", "--results-dir", str(done.result_path(results))])
    assert file_given.exit_code == 2 and "is a file, not a folder" in file_given.output, file_given.output


def test_a_results_path_that_is_a_file_and_a_bad_device_name_their_flag(tmp_path):
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    for module, args in [("reporting.cli", ["--spec", "lm20"]),
                         ("benchmark.eval_runner", ["--spec", "lm20", "--policy", "feedback"])]:
        result = run(module, *args, "--results-dir", str(a_file))
        assert result.returncode == 2 and f"--results-dir={a_file}: is a file, not a folder" in result.stderr, (
            module, result.stderr)
    env_given = subprocess.run([sys.executable, "-m", "producer", "status"], capture_output=True, text=True,
                               env={**os.environ, "RTBENCH_RESULTS_DIR": str(a_file)}, timeout=60)
    assert env_given.returncode == 2 and f"RTBENCH_RESULTS_DIR={a_file}: is a file" in env_given.stderr
    for module, args in [("benchmark.eval_runner", ["--spec", "lm20", "--policy", "feedback"]), ("worker", [])]:
        result = run(module, *args, "--device", "gpu7")
        assert result.returncode == 2 and "--device='gpu7': expected cpu, cuda or cuda:N" in result.stderr, (
            module, result.stderr)


def test_docs_are_generated_from_the_schemas_and_the_readme_links_inside_the_repository():
    root = Path(__file__).resolve().parents[2]
    check = subprocess.run([sys.executable, str(root / "scripts" / "schema_docs.py"), "--check"],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    readme = (root / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert {"docs/spec_format.md", "docs/record_format.md", "docs/report_format.md"} <= set(local)
    for link in local:
        assert not link.startswith(("/", "..")) and (root / link).exists(), link
    assert "../shared" not in readme  # documents named anywhere: tests/integration/test_references.py


def test_setup_installs_nothing_when_pyproject_is_unchanged():
    root = Path(__file__).resolve().parents[2]
    stamp = root / ".venv" / ".rtbench-setup"
    if not stamp.exists():
        pytest.skip("this .venv was not made by scripts/setup.sh")
    again = subprocess.run(["bash", str(root / "scripts" / "setup.sh")], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout == "" and again.stderr == "", again.stdout + again.stderr
    script = (root / "scripts" / "test.sh").read_text()
    assert script.index("echo \"test: installing") < script.index("apt-get install")  # says it before doing it


@pytest.mark.parametrize(("wrong", "said"), [
    ("redis://:not-the-password@{host}", "refused the login"),
    ("redis://{host}", "refused the login"),
])
def test_a_wrong_or_missing_redis_password_is_not_called_an_absent_redis(redis_server, tmp_path, wrong, said):
    if ":" not in redis_server.split("@")[0].removeprefix("redis://"):
        pytest.skip("the test Redis has no password")
    host = redis_server.rsplit("@", 1)[1]
    shown = subprocess.run([sys.executable, "-m", "producer", "status", "--broker-url", wrong.format(host=host)],
                           capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert shown.returncode == 2 and said in shown.stderr, shown.stderr
    assert "start Redis" not in shown.stderr and "not-the-password" not in shown.stderr
