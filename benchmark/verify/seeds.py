"""Stable env seeds, picked as today's benchmark picks them, on one machine or through the queue.

Today's procedure (the perturbed benchmark's ``spec_generator._load_stable_seeds_from_dataset``):
the candidates of a task are the episode numbers of its clean expert demos,
``<dataset>/<task>/qpos/<N>.pt``, sorted; one generator ``default_rng(master_seed + 2027)``
permutes them, task after task in the spec's order (so a task's order depends on the tasks
before it); then, in that order, the first candidate whose scene the scripted expert solves
(``setup_demo``, ``play_once``, ``plan_success and check_success()``) is the task's seed; if
none does, the first whose scene sets up and plays without an exception (the relaxed check); if
none does, the task has no seed (an error). One seed per task, reused by every setting and repeat.

Here the orders are computed where the dataset is (the producer, or the one-machine command),
and each task's check runs wherever a worker is free: ``python -m producer seeds`` sends one
``rtbench.pick_seed`` message per task on the ``verify`` queue, the worker writes the task's
pick under ``<results>/.seeds/``, and ``--merge`` writes the ``--env-seeds`` file that
``python -m benchmark.spec_generator`` takes, with the provenance under ``"_provenance"``. The
picks are deterministic, so the fleet's file is byte for byte the one-machine file:

    python -m benchmark.verify.seeds --dataset-root /data/clean --output env_seeds.json
    python -m benchmark.verify.seeds --merge results/.seeds/<run> --output env_seeds.json
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from benchmark.backends.base import Backend, BackendError, UnstableSceneError
from benchmark.common.atomic import write_bytes_atomic
from benchmark.common.cli_support import user_errors
from benchmark.common.errors import BenchmarkError
from benchmark.common.provenance import code_version
from benchmark.records.episode_errors import infrastructure_label
from benchmark.records.journal import note_written
from benchmark.spec.catalog import STEP_LIMITS

SHUFFLE_OFFSET = 2027  # today's: default_rng(master_seed + 2027)
PICK_KIND = "rtbench-seed-pick"
SEEDS_DIR = ".seeds"
CHECKS = ("strict", "relaxed")


class SeedPickError(BenchmarkError):
    """A dataset, a task or pick files from which no seed can be picked."""


@dataclass(frozen=True)
class SeedRun:
    """What a pick depends on: the same run gives the same seeds on any machine."""

    dataset_root: str                # absolute, as the producer saw it
    master_seed: int
    backend: str
    orders: dict[str, list[int]]     # task -> candidates in the order they are tried

    @property
    def digest(self) -> str:
        text = json.dumps([self.dataset_root, self.master_seed, self.backend, self.orders], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def header(self) -> dict[str, Any]:
        return {"kind": PICK_KIND, "run": self.digest, "dataset_root": self.dataset_root,
                "master_seed": self.master_seed, "backend": self.backend, "tasks": list(self.orders)}


@dataclass(frozen=True)
class SeedPick:
    task: str
    seed: int
    check: str        # strict (the expert solved it) or relaxed (it only ran without an exception)
    tried: int        # candidates set up, both passes counted, this one included
    candidates: int


def dataset_candidates(dataset_root: Path, task: str) -> list[int]:
    """The episode numbers of a task's clean expert demos, sorted."""
    folder = Path(dataset_root) / task / "qpos"
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise SeedPickError(f"{folder}: cannot list it ({exc.strerror}); the dataset root holds "
                            "<task>/qpos/<N>.pt, one file per clean expert demo") from None
    found = sorted(int(name[:-3]) for name in names if name.endswith(".pt") and name[:-3].isdigit())
    if not found:
        raise SeedPickError(f"{folder}: no <N>.pt file; task {task!r} has no demo to take a seed from")
    return found


def seed_run(dataset_root: Path, tasks: Sequence[str], master_seed: int, backend: str) -> SeedRun:
    """Each task's candidates in today's order: one generator for all tasks, in task order."""
    root = os.path.abspath(dataset_root)
    rng = np.random.default_rng(master_seed + SHUFFLE_OFFSET)
    orders = {task: [int(seed) for seed in rng.permutation(dataset_candidates(Path(root), task))] for task in tasks}
    return SeedRun(root, master_seed, backend, orders)


def pick_seed(backend: Backend, task: str, candidates: Sequence[int]) -> SeedPick:
    """The first candidate the expert solves, else the first that runs; ``SeedPickError`` if none."""
    tried = 0
    for check in CHECKS:
        for seed in candidates:
            tried += 1
            if _passes(backend, task, seed, strict=check == "strict"):
                return SeedPick(task, int(seed), check, tried, len(candidates))
    raise SeedPickError(f"task {task!r}: no stable seed among its {len(candidates)} dataset candidates "
                        "(strict expert check, then relaxed)")


def _passes(backend: Backend, task: str, seed: int, *, strict: bool) -> bool:
    try:
        backend.setup_demo(task, seed, STEP_LIMITS.get(task, 1000))
        backend.play_once()
        return bool(backend.plan_success and backend.check_success()) if strict else True
    except UnstableSceneError:
        return False
    except BackendError:
        raise  # the checkout or the settings (an unknown task, a missing file), not the seed
    except Exception as exc:
        # The machine's trouble (a renderer, CUDA memory) says nothing about the seed: the pick
        # stops, and the task is picked again, elsewhere perhaps. A planner crash is the seed's.
        label = infrastructure_label(exc)
        if label is not None and label != "planner_error":
            raise
        return False  # today's: an unstable scene or any exception rejects the candidate
    finally:
        with contextlib.suppress(Exception):
            backend.close_env()


def run_dir(results_dir: Path, header: dict[str, Any]) -> Path:
    """Where a run's picks go (``header``: ``SeedRun.header()``, as a message carries it)."""
    return Path(results_dir) / SEEDS_DIR / f"{header['run'][:12]}-{header['backend']}"


def pick_path(results_dir: Path, header: dict[str, Any], task: str) -> Path:
    return run_dir(results_dir, header) / f"{task}.json"


def read_pick(path: Path) -> dict[str, Any] | None:
    try:
        pick = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return pick if isinstance(pick, dict) and pick.get("kind") == PICK_KIND else None


def pick_done(path: Path, header: dict[str, Any]) -> bool:
    pick = read_pick(path)
    return pick is not None and pick.get("run") == header["run"]


def write_pick(results_dir: Path, header: dict[str, Any], pick: SeedPick, provenance: dict[str, Any]) -> Path:
    """The task's pick, atomically, journalled for the results sync like a record."""
    path = pick_path(results_dir, header, pick.task)
    data = {**header, "pick": asdict(pick), "provenance": provenance}
    write_bytes_atomic(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())
    note_written(results_dir, path.relative_to(results_dir).as_posix())
    return path


def env_seeds_file(run_header: dict[str, Any], picks: list[dict[str, Any]], provenance: dict[str, Any]) -> bytes:
    """The ``--env-seeds`` JSON: task -> seed in task order, then ``_provenance``."""
    seeds: dict[str, Any] = {pick["task"]: pick["seed"] for pick in picks}
    seeds["_provenance"] = {
        "procedure": "today's _load_stable_seeds_from_dataset: <dataset>/<task>/qpos/<N>.pt sorted, permuted by "
                     f"default_rng(master_seed + {SHUFFLE_OFFSET}) task after task, the first the expert solves, "
                     "else the first that runs",
        "dataset_root": run_header["dataset_root"], "master_seed": run_header["master_seed"],
        "backend": run_header["backend"], "run": run_header["run"], **provenance,
        "picks": {pick["task"]: {k: pick[k] for k in ("check", "tried", "candidates")} for pick in picks}}
    return (json.dumps(seeds, indent=2) + "\n").encode()


def merge_picks(folder: Path) -> bytes:
    """The ``--env-seeds`` file from a run's pick files; every task of the run must have one."""
    files = sorted(Path(folder).glob("*.json"))
    read = [read_pick(path) for path in files]
    if not files or any(pick is None for pick in read):
        bad = [str(path) for path, pick in zip(files, read, strict=True) if pick is None]
        raise SeedPickError(f"{folder}: " + (f"unreadable pick files {bad}" if bad else "no pick files; run "
                                              "python -m producer seeds first"))
    header = {key: read[0][key] for key in ("kind", "run", "dataset_root", "master_seed", "backend", "tasks")}
    other = [str(path) for path, pick in zip(files, read, strict=True) if pick.get("run") != header["run"]]
    if other:
        raise SeedPickError(f"{folder}: pick files of another run: {other}")
    by_task = {pick["pick"]["task"]: pick for pick in read}
    missing = [task for task in header["tasks"] if task not in by_task]
    if missing:
        raise SeedPickError(f"{folder}: no pick yet for {', '.join(missing)} (still queued, or dead-lettered: "
                            "python -m producer dead)")
    picks = [by_task[task]["pick"] for task in header["tasks"]]
    return env_seeds_file(header, picks, by_task[header["tasks"][0]]["provenance"])


def pick_all(run: SeedRun, backend: Backend) -> bytes:
    """The one-machine run: every task's pick here, in task order."""
    picks = [asdict(pick_seed(backend, task, candidates)) for task, candidates in run.orders.items()]
    return env_seeds_file(run.header(), picks, {"code_version": code_version(), **backend.provenance()})


@click.command(epilog="""\b
Examples:
  python -m benchmark.verify.seeds --dataset-root /data/clean \\
      --output env_seeds.json
  python -m benchmark.verify.seeds --merge results/.seeds/<run> \\
      --output env_seeds.json
  python -m benchmark.spec_generator --env-seeds env_seeds.json \\
      --output spec.json
""")
@click.option("--dataset-root", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of clean expert demos: <task>/qpos/<N>.pt.")
@click.option("--tasks", help="Comma-separated tasks, in order (default: the benchmark's 50).")
@click.option("--master-seed", type=int, default=42, show_default=True, help="Seeds the candidates' order.")
@click.option("--backend", "backend_name", default="robotwin", show_default=True, help="Simulator that checks.")
@click.option("--device", default="cpu", show_default=True, help="Where the backend runs: cpu or cuda:N.")
@click.option("--merge", "merge", type=click.Path(file_okay=False, path_type=Path),
              help="Merge the pick files of a queue run (python -m producer seeds) instead of picking here.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The --env-seeds JSON to write.")
@user_errors
def main(dataset_root: Path | None, tasks: str | None, master_seed: int, backend_name: str, device: str,
         merge: Path | None, output: Path) -> None:
    """Pick one stable env seed per task from clean expert demos, as today's benchmark does."""
    if merge is not None:
        data = merge_picks(merge)
    else:
        if dataset_root is None:
            raise click.UsageError("give --dataset-root (pick here) or --merge (a queue run's picks)")
        from benchmark.backends import backend_class

        names = [t for t in tasks.split(",") if t] if tasks else list(STEP_LIMITS)
        run = seed_run(dataset_root, names, master_seed, backend_name)
        data = pick_all(run, backend_class(backend_name)(device))
    write_bytes_atomic(output, data)
    seeds = {k: v for k, v in json.loads(data).items() if not k.startswith("_")}
    click.echo(f"wrote {output}: {len(seeds)} seed(s); "
               f"python -m benchmark.spec_generator --env-seeds {output} ...")


if __name__ == "__main__":
    main()
