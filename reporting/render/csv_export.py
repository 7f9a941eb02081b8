"""One CSV file per table: overall, by setting, by task, by perturb_type, by severity, by timing."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from benchmark.common.atomic import write_bytes_atomic
from reporting.render.tables import tables
from reporting.report_schema import Report


def _cell(value: Any) -> Any:
    return f"{value:.6f}" if isinstance(value, float) else value


def _split_intervals(header: list[str], rows: list[list[Any]]) -> tuple[list[str], list[list[Any]]]:
    """An interval column (``[low, high]`` cells) becomes two, ``<name>_low`` and
    ``<name>_high``: one number per cell, as spreadsheets and pandas expect."""
    pairs = {i for i, _ in enumerate(header) if any(isinstance(row[i], list | tuple) for row in rows)}
    wide_header = [part for i, name in enumerate(header)
                   for part in ((f"{name}_low", f"{name}_high") if i in pairs else (name,))]
    wide_rows = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            if i in pairs:
                cells += [_cell(v) for v in value] if isinstance(value, list | tuple) else ["", ""]
            else:
                cells.append(value)
        wide_rows.append(cells)
    return wide_header, wide_rows


def write_csv_tables(report: Report, directory: Path) -> list[Path]:
    written = []
    for name, (header, rows) in tables(report).items():
        header, rows = _split_intervals(list(header), [list(row) for row in rows])
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        written.append(write_bytes_atomic(directory / f"{name}.csv", buffer.getvalue().encode()))
    return written
