"""Verified specs: keep the perturbations that make the clean expert fail (docs/domain.md §5).

For one (setting, task) at a time (the unit the queue distributes), and for each repeat
slot: sample a config, replay the clean expert trajectory through its channel on the
backend (then hold the last command, as ``expert_replay`` does), and label it
``caused_failure = not success``. A slot resamples until the perturbation is effective, at
most ``max_tries`` times; once a slot exhausts its tries it keeps its last sample, and the
remaining slots of that (setting, task) take one sample each.

The generator of a unit is seeded from a stable hash of (master seed, setting id, task),
so a unit gives the same configs in any process, on any worker, in any order.

    python -m benchmark.verify --base lm20 --worker-id 0 --num-workers 2 --parts-dir .rtbench/verify
    python -m benchmark.verify --base lm20 --worker-id 1 --num-workers 2 --parts-dir .rtbench/verify
    python -m benchmark.verify --merge .rtbench/verify --output benchmark/benchmark_spec_verified.json
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from benchmark.backends.base import Backend
from benchmark.common.atomic import write_bytes_atomic
from benchmark.common.cli_support import user_errors
from benchmark.common.errors import BenchmarkError
from benchmark.common.provenance import code_version
from benchmark.records.episodes import partition
from benchmark.spec.catalog import t_on_raw
from benchmark.spec.generator import spec_bytes
from benchmark.spec.perturbation import create_channel, sample_params
from benchmark.spec.spec_file import Spec, load_spec, parse_spec
from benchmark.verify.units import load_run

DEFAULT_MAX_TRIES = 100


class VerifyError(BenchmarkError):
    """Verification parts that cannot be merged, or bad verification input."""


def unit_seed(master_seed: int, setting_id: str, task: str) -> int:
    digest = hashlib.sha256(f"verify|{master_seed}|{setting_id}|{task}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


@dataclass
class UnitResult:
    configs: list[dict[str, Any]]
    tries: int
    effective: int
    exhausted_slot: int | None  # first slot that ran out of tries, if any

    def stats(self) -> dict[str, Any]:
        return {"tries": self.tries, "effective": self.effective, "slots": len(self.configs),
                "exhausted_slot": self.exhausted_slot}


def replay_fails(backend: Backend, task: str, env_seed: int, step_limit: int, config: dict[str, Any]) -> bool:
    """Replay the clean expert plan through the config's channel; True when the task fails."""
    backend.setup_demo(task, env_seed, step_limit)
    try:
        plan = backend.plan_expert()
        if not plan.success:
            raise VerifyError(f"the scripted expert cannot solve {task} with env seed {env_seed}; "
                              "the scene is unusable for verification")
        channel = create_channel(config, backend.joint_state())
        index, previous = 0, None
        while not backend.done:
            command = plan.trajectory[min(index, len(plan.trajectory) - 1)]
            index += 1
            backend.take_action(channel.step(command), "qpos")
            # Once the plan is over, the channel active and both arm and channel output at a
            # fixed point, nothing can change any more: stop early, same outcome.
            if index > len(plan.trajectory) and channel.active:
                state = (backend.joint_state(), channel.a_prev.copy())
                if previous is not None and all(np.array_equal(a, b) for a, b in zip(state, previous, strict=True)):
                    break
                previous = state
        return not backend.check_success()
    finally:
        backend.close_env()


def verify_unit(spec: Spec, setting_id: str, task: str, backend: Backend, *, master_seed: int,
                max_tries: int = DEFAULT_MAX_TRIES) -> UnitResult:
    """Verified configs for every repeat slot of one (setting, task) of ``spec``."""
    setting = spec.setting(setting_id)
    step_limit = spec.step_limit(task)
    env_seed = spec.env_seed(setting_id, task, 0)
    rng = np.random.default_rng(unit_seed(master_seed, setting_id, task))
    configs, tries, effective, exhausted = [], 0, 0, None
    for slot in range(spec.repeats):
        budget = 1 if exhausted is not None else max_tries
        for attempt in range(1, budget + 1):
            config = {
                "perturbation_type": setting.perturb_type,
                "severity": setting.severity,
                "timing": setting.timing,
                "t_on_raw": t_on_raw(setting.timing, step_limit),
                "params": sample_params(setting.perturb_type, setting.severity, rng),
                "seed": int(rng.integers(0, 2**31)),
            }
            config["caused_failure"] = replay_fails(backend, task, env_seed, step_limit, config)
            tries += 1
            if config["caused_failure"]:
                effective += 1
                break
            if attempt == max_tries and exhausted is None:
                exhausted = slot
        configs.append(config)
    return UnitResult(configs, tries, effective, exhausted)


def units(spec: Spec) -> list[tuple[str, str]]:
    """The (setting, task) units of a spec in canonical order."""
    return [(s.id, task) for s in spec.settings for task in spec.tasks]


# ---------------------------------------------------------------------- part files

PART_KIND = "rtbench-verify-part"


def part_path(parts_dir: Path, worker_id: int, num_workers: int) -> Path:
    return parts_dir / f"part_{worker_id:03d}_of_{num_workers:03d}.json"


def part_header(base: Spec, *, master_seed: int, max_tries: int, backend: str, worker_id: int,
                num_workers: int) -> dict[str, Any]:
    return {"kind": PART_KIND, "base": {"name": base.name, "sha256": base.sha256}, "master_seed": master_seed,
            "max_tries": max_tries, "backend": backend, "worker_id": worker_id, "num_workers": num_workers}


def load_part(path: Path) -> dict[str, Any]:
    try:
        part = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VerifyError(f"part file {path} is unreadable ({exc}); delete it and run its worker again") from None
    if not isinstance(part, dict) or part.get("kind") != PART_KIND:
        raise VerifyError(f"{path} is not a verification part file")
    return part


def merge_parts(base: Spec, parts_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The verified spec data from complete, consistent parts; errors name what is missing."""
    paths = sorted(parts_dir.glob("part_*.json"))
    if not paths:
        raise VerifyError(f"no part files in {parts_dir}; run python -m benchmark.verify --worker-id ... first")
    parts = [load_part(p) for p in paths]
    keys = ("base", "master_seed", "max_tries", "backend", "num_workers")
    first = parts[0]
    for path, part in zip(paths, parts, strict=True):
        for key in keys:
            if part.get(key) != first.get(key):
                raise VerifyError(f"{path.name}: {key} is {part.get(key)!r} but {paths[0].name} has "
                                  f"{first.get(key)!r}; parts of different runs cannot be merged")
    if first["base"]["sha256"] != base.sha256:
        raise VerifyError(f"parts were made from base spec {first['base']['name']} (sha256 "
                          f"{first['base']['sha256'][:12]}), not {base.name} ({base.sha256[:12]})")
    num_workers = first["num_workers"]
    missing_workers = sorted(set(range(num_workers)) - {p["worker_id"] for p in parts})
    if missing_workers:
        raise VerifyError(f"missing parts of workers {missing_workers} (of {num_workers}) in {parts_dir}")
    unfinished = [p.name for p, part in zip(paths, parts, strict=True) if not part.get("complete")]
    if unfinished:
        raise VerifyError(f"incomplete parts: {', '.join(unfinished)}; run those workers again to finish them")
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path, part in zip(paths, parts, strict=True):
        for unit in part["units"]:
            key = (unit["setting_id"], unit["task"])
            if key in found:
                raise VerifyError(f"{path.name}: unit {key[0]}/{key[1]} appears in two parts")
            found[key] = unit
    wanted = units(base)
    missing = [f"{s}/{t}" for s, t in wanted if (s, t) not in found]
    if missing:
        raise VerifyError(f"{len(missing)} (setting, task) units missing from the parts, e.g. {', '.join(missing[:5])}")
    extra = sorted(f"{s}/{t}" for s, t in set(found) - set(wanted))
    if extra:
        raise VerifyError(f"parts hold units that are not in {base.name}: {', '.join(extra[:5])}")
    return _verified_spec(base, first, [found[u] for u in wanted], parts), [found[u] for u in wanted]


def _verified_spec(base: Spec, header: dict[str, Any], ordered_units: list[dict[str, Any]],
                   parts: list[dict[str, Any]]) -> dict[str, Any]:
    data = {k: v for k, v in base.data.items() if k not in ("derived_from", "verified")}
    configs: dict[str, dict[str, list]] = {}
    per_unit: dict[str, dict[str, Any]] = {}
    for unit in ordered_units:
        configs.setdefault(unit["setting_id"], {})[unit["task"]] = unit["configs"]
        per_unit.setdefault(unit["setting_id"], {})[unit["task"]] = unit["stats"]
    data["perturbation_configs"] = configs
    stats = [u["stats"] for u in ordered_units]
    data["verified"] = True
    data["verification_stats"] = {"total_tries": sum(s["tries"] for s in stats),
                                  "effective": sum(s["effective"] for s in stats),
                                  "exhausted": sum(s["exhausted_slot"] is not None for s in stats)}
    data["verified_with"] = {
        "backend": header["backend"],
        "replay": "clean scripted expert trajectory, open loop, last command held to the step limit",
        "master_seed": header["master_seed"],
        "max_tries": header["max_tries"],
        "code_version": sorted({p["code_version"] for p in parts}),
        "base": header["base"],
        "per_unit": per_unit,
    }
    simulators = {json.dumps(p.get("backend_provenance"), sort_keys=True) for p in parts if p.get("backend_provenance")}
    if simulators:  # e.g. the RoboTwin commit; none for the built-in kinematic simulator
        data["verified_with"]["backend_provenance"] = [json.loads(s) for s in sorted(simulators)]
    return data


def run_worker(base: Spec, backend: Backend, parts_dir: Path, *, worker_id: int, num_workers: int, master_seed: int,
               max_tries: int, console: Console) -> Path:
    """Verify this worker's share of units into its part file, resuming a previous run."""
    header = part_header(base, master_seed=master_seed, max_tries=max_tries, backend=backend.name,
                         worker_id=worker_id, num_workers=num_workers)
    path = part_path(parts_dir, worker_id, num_workers)
    part = {**header, "code_version": code_version(), "backend_provenance": backend.provenance(), "complete": False,
            "units": []}
    if path.exists():
        previous = load_part(path)
        if all(previous.get(k) == v for k, v in header.items()):
            part["units"] = previous["units"]  # resume: same run, keep finished units
    done = {(u["setting_id"], u["task"]) for u in part["units"]}
    mine = [u for u in partition(units(base), worker_id, num_workers) if u not in done]
    progress = Progress(TextColumn("verify"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[unit]}"),
                        TimeRemainingColumn(), console=console)
    with progress:
        bar = progress.add_task("units", total=len(mine) + len(done), completed=len(done), unit="")
        for setting_id, task in mine:
            result = verify_unit(base, setting_id, task, backend, master_seed=master_seed, max_tries=max_tries)
            part["units"].append({"setting_id": setting_id, "task": task, "configs": result.configs,
                                  "stats": result.stats()})
            write_bytes_atomic(path, json.dumps(part).encode())
            progress.update(bar, advance=1, unit=f"{setting_id}/{task}: {result.effective}/{result.tries} effective")
    part["complete"] = True
    write_bytes_atomic(path, json.dumps(part).encode())
    return path


def effectiveness_table(ordered_units: list[dict[str, Any]]) -> Table:
    """Per setting: how often a sampled perturbation made the clean expert fail."""
    table = Table(title="verification: effectiveness per setting")
    for column in ("setting", "units", "tries", "effective", "effective/try", "exhausted units", "slots labelled"):
        table.add_column(column, justify="left" if column == "setting" else "right")
    by_setting: dict[str, list[dict[str, Any]]] = {}
    for unit in ordered_units:
        by_setting.setdefault(unit["setting_id"], []).append(unit["stats"])
    for setting_id, stats in by_setting.items():
        tries = sum(s["tries"] for s in stats)
        effective = sum(s["effective"] for s in stats)
        table.add_row(setting_id, str(len(stats)), str(tries), str(effective), f"{effective / tries:.1%}",
                      str(sum(s["exhausted_slot"] is not None for s in stats)),
                      f"{effective}/{sum(s['slots'] for s in stats)}")
    return table


@click.command(epilog="""\b
Examples:
  python -m benchmark.verify --base lm20 --worker-id 0 --num-workers 2
  python -m benchmark.verify --merge \\
      --output benchmark/benchmark_spec_verified.json
  python -m benchmark.verify --base lm20 --merge \\
      --parts-dir results/.verify/lm20-<sha>-robotwin --output v.json
""")
@click.option("--base", "base_ref", default="lm20", show_default=True,
              help="Spec whose settings, tasks, repeats and env seeds are verified.")
@click.option("--parts-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".rtbench/verify"),
              show_default=True)
@click.option("--worker-id", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--num-workers", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--master-seed", type=int, help="Seed of the unit generators (default: the base spec's).")
@click.option("--max-tries", type=click.IntRange(min=1), default=DEFAULT_MAX_TRIES, show_default=True)
@click.option("--backend", "backend_name", default="kinematic", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--merge", is_flag=True, help="Merge the complete parts of --parts-dir (static part files, or the "
              "unit folder of a queue run: results/.verify/<run>) into --output.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Verified spec to write (with --merge).")
@user_errors
def main(base_ref, parts_dir, worker_id, num_workers, master_seed, max_tries, backend_name, device, merge,
         output) -> None:
    """Verify perturbations (caused_failure labels) one (setting, task) at a time, then merge the parts."""
    console = Console(stderr=True)
    base = load_spec(base_ref)
    if merge:
        if output is None:
            raise click.BadParameter("--merge needs --output", param_hint="--output")
        if any(parts_dir.glob("part_*.json")):
            data, ordered = merge_parts(base, parts_dir)
        else:  # the unit files of a queue run (python -m producer verify)
            header, ordered, codes = load_run(base, parts_dir)
            data = _verified_spec(base, header, ordered, codes)
        raw = spec_bytes(data)
        parse_spec(raw, source=str(output))  # never write a spec the loader would refuse
        write_bytes_atomic(output, raw)
        Console().print(effectiveness_table(ordered))
        stats = data["verification_stats"]
        click.echo(f"wrote {output}: {stats['effective']} effective of {stats['total_tries']} tries, "
                   f"{stats['exhausted']} units exhausted")
        return
    if worker_id >= num_workers:
        raise click.BadParameter(f"must be below --num-workers ({num_workers})", param_hint="--worker-id")
    from benchmark.backends import backend_class

    backend = backend_class(backend_name)(device)
    path = run_worker(base, backend, parts_dir, worker_id=worker_id, num_workers=num_workers,
                      master_seed=base.master_seed if master_seed is None else master_seed, max_tries=max_tries,
                      console=console)
    click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
