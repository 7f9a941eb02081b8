"""``python -m benchmark.check_spec SPEC...``: validate spec files and summarise them."""

from __future__ import annotations

import click
from rich.console import Console

from benchmark.common.cli_support import user_errors
from benchmark.common.terminal_tables import fill_table, new_table
from benchmark.spec.spec_file import load_spec


@click.command(epilog="""\b
Examples:
  python -m benchmark.check_spec lm20 full
  python -m benchmark.check_spec my_spec.json --settings
""")
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@click.option("--settings", "show_settings", is_flag=True, help="Also list each spec's settings.")
@user_errors
def main(specs: tuple[str, ...], show_settings: bool) -> None:
    """Validate specs (aliases full, lm20, verified, or paths) and print what they hold.

    Exits with code 2 and one line naming the file and JSON path at the first problem.
    """
    console = Console()
    loaded = [load_spec(ref) for ref in specs]
    rows = [[spec.name, spec.sha256[:12], str(len(spec.settings)), str(len(spec.tasks)), str(spec.repeats),
             f"{spec.episodes_per_policy:,}", "yes" if spec.has_caused_failure else "no"] for spec in loaded]
    # 80 columns: the files go under the table, one line each, instead of a column that cuts them.
    table = fill_table(new_table("Specs"), ["spec", "sha256", "settings", "tasks", "repeats", "episodes",
                                            "verified"], rows)
    console.print(table)
    console.print("episodes: per policy; verified: has caused_failure labels (effective rates)")
    for spec in loaded:
        console.print(f"{spec.name}: {spec.path or 'built in'}", soft_wrap=True, highlight=False)
    if show_settings:
        for spec in loaded:
            rows = [[s.id, s.perturb_type, s.severity, s.timing] for s in spec.settings]
            console.print(fill_table(new_table(f"{spec.name}: settings"),
                                     ["id", "perturb_type", "severity", "timing"], rows, names=4))


if __name__ == "__main__":
    main()
