"""The worker's heartbeat file, and ``python -m worker.heartbeat``: the container health check.

A health check must not ask the worker (``celery inspect ping`` waits for the broker and for a
busy worker, and a busy worker is a healthy one). Instead the worker keeps a heartbeat file:
its main process rewrites it whenever Celery sends its event heartbeat (every 2 s, from the
consumer's event loop: a hung loop or a lost broker stops it, an episode running in a pool
child does not), and a hot spare rewrites it while it waits for a GPU. The check only reads
the file's age, so it never blocks. The file is written only where ``RTBENCH_HEARTBEAT_FILE``
names it (the image sets it; local workers sharing a /tmp would overwrite each other's).

    python -m worker.heartbeat                   # exit 0 if fresh, 1 with the reason
    python -m worker.heartbeat --max-age 900     # the sync service, whose cycle blocks its loop

Only the standard library is imported: the check runs every 30 s in every container.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

FILE_VARIABLE = "RTBENCH_HEARTBEAT_FILE"
MAX_AGE_VARIABLE = "RTBENCH_HEARTBEAT_MAX_AGE"
DEFAULT_MAX_AGE_S = 60.0
MIN_INTERVAL_S = 5.0  # Celery beats every 2 s; rewriting the file that often buys nothing


class Heartbeat:
    """Writes ``{"state", "name", "pid", "time"}`` to the file (atomically), at most every 5 s
    for the same state."""

    def __init__(self, path: Path, name: str) -> None:
        self.path, self.name = path, name
        self._last: tuple[str, float] = ("", float("-inf"))

    def beat(self, state: str) -> None:
        now = time.monotonic()
        if state == self._last[0] and now - self._last[1] < MIN_INTERVAL_S:
            return
        self._last = (state, now)
        body = json.dumps({"state": state, "name": self.name, "pid": os.getpid(), "time": time.time()})
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        try:
            temporary.write_text(body + "\n", encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:  # the check will say "stale"; the worker itself goes on working
            print(f"heartbeat: cannot write {self.path}: {exc}", file=sys.stderr)


def start_heartbeat(path: Path | None, name: str) -> Heartbeat | None:
    """Beat "starting" now and "working" on each of Celery's event heartbeats (main process)."""
    if path is None:
        return None
    from celery.signals import heartbeat_sent, worker_ready

    heartbeat = Heartbeat(path, name)
    heartbeat.beat("starting")

    @worker_ready.connect(weak=False)
    def _ready(**_: object) -> None:
        heartbeat.beat("working")

    @heartbeat_sent.connect(weak=False)
    def _sent(**_: object) -> None:
        heartbeat.beat("working")

    return heartbeat


def check(path: Path, max_age_s: float, now: float | None = None) -> tuple[bool, str]:
    """(healthy, one line saying why) for the heartbeat file at ``path``."""
    try:
        age = (time.time() if now is None else now) - path.stat().st_mtime
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False, f"no heartbeat at {path} yet (still starting, or {FILE_VARIABLE} differs from the worker's)"
    except (OSError, ValueError) as exc:
        return False, f"heartbeat {path} unreadable: {exc}"
    what = f"{content.get('name', '?')} {content.get('state', '?')} (pid {content.get('pid', '?')})"
    if age > max_age_s:
        return False, f"stale: {what}, last heartbeat {age:.0f} s ago (limit {max_age_s:.0f} s)"
    return True, f"ok: {what}, last heartbeat {age:.0f} s ago"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.heartbeat",
                                     description="Exit 0 if the worker's heartbeat file is fresh, else 1.")
    parser.add_argument("--file", type=Path, default=os.environ.get(FILE_VARIABLE),
                        help=f"heartbeat file (default: ${FILE_VARIABLE})")
    parser.add_argument("--max-age", type=float, help=f"seconds (default: ${MAX_AGE_VARIABLE}, else "
                                                      f"{DEFAULT_MAX_AGE_S:.0f})")
    args = parser.parse_args(argv)
    if args.max_age is None:
        try:
            args.max_age = float(os.environ.get(MAX_AGE_VARIABLE, DEFAULT_MAX_AGE_S))
        except ValueError:
            print(f"{MAX_AGE_VARIABLE}={os.environ[MAX_AGE_VARIABLE]!r}: expected seconds", file=sys.stderr)
            return 2
    if args.file is None:
        print(f"no heartbeat file: set {FILE_VARIABLE} or pass --file", file=sys.stderr)
        return 2
    healthy, line = check(args.file, args.max_age)
    print(line)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
