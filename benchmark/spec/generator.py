"""Deterministic spec generation: ``python -m benchmark.spec_generator`` (docs/domain.md §5).

Loop order: perturb_type -> severity -> timing -> task. For every (setting, task) of
the full 20-setting grid the master generator draws ``st = integers(0, 2**31)``, even
for settings left out with ``--severity``, so a subset holds exactly the configs of
the full spec. Per repeat, ``default_rng(st)`` draws the params, then the
perturbation seed. Env seeds never come from that generator: each task has one env
seed, reused for every setting and repeat.

Default env seeds (without ``--env-seeds``): for each task in task order, one draw of
``integers(10000, 100000)`` from ``default_rng(master_seed + 2027)``: the candidate
stream the original generator probed for solvable seeds. They are not verified on
RoboTwin; pass ``--env-seeds`` with seeds the scripted expert solves there.

Output is compact JSON (no indentation, ASCII) and byte-for-byte reproducible; a
``.gz`` output is gzipped with a fixed header time and no file name.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmark.common.atomic import write_bytes_atomic
from benchmark.common.cli_support import user_errors
from benchmark.common.errors import BenchmarkError, InvalidNameError
from benchmark.common.names import validate_name
from benchmark.spec.catalog import SEVERITIES, STEP_LIMITS, TASKS, all_settings, t_on_raw
from benchmark.spec.perturbation import sample_params
from benchmark.spec.spec_file import load_spec, read_spec_bytes, resolve_spec_path

ENV_SEED_STREAM_OFFSET = 2027
DEFAULT_TASKS_FILE = Path(__file__).resolve().parents[1] / "tasks_all.txt"


class GenerationError(BenchmarkError):
    """Bad generator input (tasks file, env seeds file, derivation check)."""


def default_env_seeds(tasks: Sequence[str], master_seed: int) -> dict[str, int]:
    rng = np.random.default_rng(master_seed + ENV_SEED_STREAM_OFFSET)
    return {task: int(rng.integers(10000, 100000)) for task in tasks}


def generate_spec(
    tasks: Sequence[str],
    step_limits: dict[str, int],
    repeats: int,
    master_seed: int = 42,
    severities: Sequence[str] = SEVERITIES,
    env_seeds: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The spec as a JSON-ready dict, keys in the published order."""
    if repeats < 1:
        raise GenerationError(f"--repeats must be at least 1, got {repeats}")
    seeds = env_seeds if env_seeds is not None else default_env_seeds(tasks, master_seed)
    master = np.random.default_rng(master_seed)
    settings, configs, env = [], {}, {}
    for setting in all_settings():
        included = setting["severity"] in severities
        if included:
            settings.append(setting)
            configs[setting["id"]], env[setting["id"]] = {}, {}
        for task in tasks:
            st = int(master.integers(0, 2**31))  # drawn for every setting: keeps subsets aligned
            if not included:
                continue
            rng = np.random.default_rng(st)
            onset = t_on_raw(setting["timing"], step_limits[task])
            task_configs = []
            for _ in range(repeats):
                params = sample_params(setting["perturb_type"], setting["severity"], rng)
                task_configs.append({
                    "perturbation_type": setting["perturb_type"],
                    "severity": setting["severity"],
                    "timing": setting["timing"],
                    "t_on_raw": onset,
                    "params": params,
                    "seed": int(rng.integers(0, 2**31)),
                })
            configs[setting["id"]][task] = task_configs
            env[setting["id"]][task] = [seeds[task]] * repeats
    return {
        "master_seed": master_seed,
        "repeats_per_setting": repeats,
        "num_settings": len(settings),
        "num_tasks": len(tasks),
        "total_episodes_per_policy": len(settings) * len(tasks) * repeats,
        "settings": settings,
        "tasks": list(tasks),
        "step_limits": {task: step_limits[task] for task in tasks},
        "perturbation_configs": configs,
        "env_seeds": env,
    }


def spec_bytes(spec: dict[str, Any]) -> bytes:
    return json.dumps(spec, separators=(",", ":")).encode("ascii")


def gzip_bytes(data: bytes) -> bytes:
    """Reproducible gzip: fixed mtime, no embedded file name."""
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, compresslevel=9, mtime=0) as gz:
        gz.write(data)
    return buffer.getvalue()


def read_tasks_file(path: Path) -> tuple[list[str], dict[str, int]]:
    """Tasks, one per line (``name`` or ``name step_limit``); ``#`` starts a comment."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise GenerationError(f"tasks file {path}: cannot read it ({exc.strerror or exc})") from None
    tasks: list[str] = []
    limits: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"tasks file {path}, line {number}"
        if len(fields) > 2 or (len(fields) == 2 and not fields[1].isdigit()):
            raise GenerationError(f"{where}: expected 'task' or 'task step_limit', found {line.strip()!r}")
        task = fields[0]
        try:
            validate_name(task, "task")
        except InvalidNameError as exc:
            raise GenerationError(f"{where}: {exc}") from None
        if task in limits:
            raise GenerationError(f"{where}: task {task!r} is listed twice")
        if len(fields) == 2:
            limits[task] = int(fields[1])
        elif task in STEP_LIMITS:
            limits[task] = STEP_LIMITS[task]
        else:
            raise GenerationError(f"{where}: {task!r} is not a RoboTwin benchmark task; "
                                  "give its step limit as 'task step_limit'")
        if limits[task] < 1:
            raise GenerationError(f"{where}: the step limit must be positive")
        tasks.append(task)
    if not tasks:
        raise GenerationError(f"tasks file {path}: no tasks in it")
    return tasks, limits


def tasks_file_text(tasks: Sequence[str] = TASKS) -> str:
    return "".join(f"{task}\n" for task in tasks)


def read_env_seeds(path: Path, tasks: Sequence[str]) -> dict[str, int]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GenerationError(f"env seeds file {path}: cannot read it ({exc.strerror or exc})") from None
    except json.JSONDecodeError as exc:
        raise GenerationError(f"env seeds file {path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise GenerationError(f"env seeds file {path}: expected a JSON object task -> seed")
    for task in tasks:
        seed = data.get(task)
        if type(seed) is not int or seed < 0:
            found = "missing" if task not in data else repr(seed)
            raise GenerationError(f"env seeds file {path}: {task}: expected a non-negative integer seed, "
                                  f"found {found}")
    return {task: data[task] for task in tasks}


def derivation_record(spec: dict[str, Any], parent_ref: str) -> dict[str, Any]:
    """Check that ``spec`` is a prefix subset of the parent spec; describe the parent."""
    parent_path = resolve_spec_path(parent_ref)
    parent = load_spec(parent_ref)
    for setting in spec["settings"]:
        sid = setting["id"]
        for task in spec["tasks"]:
            n = spec["repeats_per_setting"]
            if not parent.contains(sid, task, n - 1):
                raise GenerationError(f"--derived-from {parent_ref}: {sid}/{task} repeat {n - 1} is not in it")
            theirs = parent.data["perturbation_configs"][sid][task][:n]
            if spec["perturbation_configs"][sid][task] != theirs or \
                    spec["env_seeds"][sid][task] != parent.data["env_seeds"][sid][task][:n]:
                raise GenerationError(f"--derived-from {parent_ref}: configs of {sid}/{task} differ from it; "
                                      "use the same master seed, tasks and env seeds")
    return {"spec": parent_path.name, "sha256": hashlib.sha256(read_spec_bytes(parent_path)).hexdigest(),
            "repeats": spec["repeats_per_setting"],
            "severities": sorted({s["severity"] for s in spec["settings"]}, key=SEVERITIES.index)}


@click.command(epilog="""\b
Examples:
  python -m benchmark.spec_generator --repeats 50 \\
      --output benchmark/benchmark_spec.json.gz
  python -m benchmark.spec_generator --repeats 20 --severity lm \\
      --derived-from full \\
      --output benchmark/benchmark_spec_lm20.json
""")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Spec file to write; gzipped when it ends in .gz.")
@click.option("--repeats", type=click.IntRange(min=1), default=50, show_default=True,
              help="Repeats per (setting, task).")
@click.option("--severity", "severities", type=click.Choice(SEVERITIES), multiple=True,
              help="Keep only these severities (repeatable); default: both.")
@click.option("--tasks-file", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_TASKS_FILE,
              show_default="benchmark/tasks_all.txt", help="Tasks, one per line, optionally 'task step_limit'.")
@click.option("--master-seed", type=int, default=42, show_default=True)
@click.option("--env-seeds", "env_seeds_file", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON object task -> env seed (seeds the scripted expert solves).")
@click.option("--derived-from", metavar="SPEC",
              help="Check the output is the first repeats of SPEC and record SPEC's name and sha256; "
                   "the output is then marked unverified.")
@click.option("--write-tasks-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the task list used, one per line.")
@user_errors
def main(output: Path, repeats: int, severities: tuple[str, ...], tasks_file: Path, master_seed: int,
         env_seeds_file: Path | None, derived_from: str | None, write_tasks_file: Path | None) -> None:
    """Generate a deterministic benchmark spec file."""
    tasks, limits = read_tasks_file(tasks_file)
    env_seeds = read_env_seeds(env_seeds_file, tasks) if env_seeds_file else None
    spec = generate_spec(tasks, limits, repeats, master_seed, severities or SEVERITIES, env_seeds)
    if derived_from:
        spec["verified"] = False
        spec["derived_from"] = derivation_record(spec, derived_from)
    data = spec_bytes(spec)
    write_bytes_atomic(output, gzip_bytes(data) if output.suffix == ".gz" else data)
    if write_tasks_file:
        write_bytes_atomic(write_tasks_file, tasks_file_text(tasks).encode())
    click.echo(f"wrote {output}: {spec['num_settings']} settings x {spec['num_tasks']} tasks x {repeats} repeats "
               f"= {spec['total_episodes_per_policy']} episodes/policy, sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
