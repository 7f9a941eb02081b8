"""``producer seeds``: pick each task's stable env seed on the fleet (one message per task)."""

from __future__ import annotations

from pathlib import Path

import click

from benchmark.common.cli_support import UserError, user_errors
from benchmark.common.names import validate_name
from benchmark.spec.catalog import STEP_LIMITS
from producer.cli import Context, cli, group_options
from producer.seeds import plan_seeds, send_picks
from worker.queue.messages import VERIFY_QUEUE


@cli.command(short_help="Enqueue one stable-seed pick per task not picked yet.", epilog="""\b
Examples:
  python -m producer seeds --dataset-root /data/clean --backend robotwin
  python -m producer seeds --dataset-root /data/clean \\
      --tasks click_bell,open_laptop
  (workers: RTBENCH_QUEUES=verify RTBENCH_BACKEND=robotwin python -m worker)
""")
@click.option("--dataset-root", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder of clean expert demos: <task>/qpos/<N>.pt (read here; workers need not see it).")
@click.option("--tasks", help="Comma-separated tasks, in order (default: the benchmark's 50, in its order).")
@click.option("--master-seed", type=int, default=42, show_default=True, help="Seeds the candidates' order.")
@click.option("--backend", help="Simulator that checks (default: RTBENCH_BACKEND, else kinematic).")
@click.option("--dry-run", is_flag=True, help="Say what would be sent; send nothing.")
@group_options
@click.pass_obj
@user_errors
def seeds(obj: Context, dataset_root: Path, tasks: str | None, master_seed: int, backend: str | None,
          dry_run: bool) -> None:
    """Enqueue one stable-seed pick per task not picked yet, on the 'verify' queue, as today's
    procedure picks them (strict expert check, then relaxed, in a seeded order)."""
    from benchmark.backends import available_backends  # numpy: only this command needs it
    from benchmark.verify.seeds import seed_run

    backend = backend or obj.settings.backend
    if backend not in available_backends():
        raise UserError(f"--backend {backend!r}: unknown backend; known backends: {', '.join(available_backends())}")
    names = [validate_name(t, "task") for t in tasks.split(",") if t] if tasks else list(STEP_LIMITS)
    run = seed_run(dataset_root, names, master_seed, backend)
    plan = plan_seeds(run, obj.settings.results_dir, obj.state.queued_task_ids(VERIFY_QUEUE))
    if not dry_run:
        send_picks(obj.state, run, plan)
    verb = "would enqueue" if dry_run else "enqueued"
    click.echo(f"{verb} {len(plan.tasks)} seed picks on the '{VERIFY_QUEUE}' queue ({plan.picked} picked "
               f"already, {plan.queued} waiting in the queue); backend {backend}")
    click.echo(f"when all are picked: python -m benchmark.verify.seeds --merge {plan.folder} "
               "--output env_seeds.json")
