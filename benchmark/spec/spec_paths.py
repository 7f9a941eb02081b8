"""Where a spec file lies: an alias (``full``, ``lm20``, ``verified``) or a path. Kept apart
from ``spec_file`` (which validates with numpy) so that a warm report can identify its spec
without importing what parsing needs."""

from __future__ import annotations

from pathlib import Path

from benchmark.common.errors import SpecError

SPEC_DIR = Path(__file__).resolve().parents[1]  # the shipped specs lie in benchmark/
ALIASES: dict[str, str] = {
    "full": "benchmark_spec.json",
    "lm20": "benchmark_spec_lm20.json",
    "verified": "benchmark_spec_verified.json",
}


def resolve_spec_path(name_or_path: str | Path) -> Path:
    """The file of an alias or path; an alias, or a ``.json`` path, also finds ``.json.gz``."""
    text = str(name_or_path)
    path = SPEC_DIR / ALIASES[text] if text in ALIASES else Path(text).expanduser()
    if path.is_file():
        return path
    gz = path.with_name(path.name + ".gz")
    if path.suffix == ".json" and gz.is_file():
        return gz
    hint = f"alias {text!r} -> {path}" if text in ALIASES else str(path)
    raise SpecError(text, "", f"spec file not found ({hint}); give an alias "
                    f"({', '.join(ALIASES)}) or the path of a .json or .json.gz spec")
