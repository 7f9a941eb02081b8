"""``enqueue --reconcile``: episodes in the done-set whose record is missing from the results
tree here (deleted, or lost with a machine's disk before its sync) are sent again, but only
once nothing can still bring that record.

A record reaches the tree the fleet syncs to through its machine's sync. So an episode that
machine M marked done at time t is lost when its record is not here although M has since
pushed (its last successful sync cycle started after t, and this clone holds that push), or
when M is named lost (``--lost-machine``). It is not lost, and waits, while M may still push
it. Records written on this machine straight into this tree (no sync: a laptop) are lost when
missing. For an episode marked before machines were noted, or from the records by ``enqueue``,
every syncing machine must have pushed since.
"""

from __future__ import annotations

import subprocess
import textwrap
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from benchmark.common.cli_support import UserError
from worker.queue.state import QueueState


class Reconciler:
    """Decides, per episode missing here, lost (send it again) or waiting (for which machine)."""

    def __init__(self, state: QueueState, results_dir: Path, this_machine: str,
                 lost_machines: Iterable[str] = ()) -> None:
        self.state, self.results_dir, self.this_machine = state, results_dir, this_machine
        self.lost_machines = set(lost_machines)
        # machine -> (start of its last successful cycle, the commit it pushed then)
        statuses = state.sync_statuses()  # one scan of the sync keys
        self.pushed: dict[str, tuple[float, str]] = {}
        for machine, fields in statuses.items():
            if fields.get("ok_started"):
                self.pushed[machine] = float(fields["ok_started"]), fields.get("commit", "")
        self.syncing = set(statuses)
        self._checked: set[str] = set()
        self.waiting: Counter = Counter()  # machine -> episodes that may still arrive from it

    def lost(self, spec_sha: str, missing: list[str]) -> set[str]:
        """Those of ``missing`` (done-set episodes without a record here) that nothing can
        still bring; the others are counted in ``waiting``."""
        found = set()
        for episode_id, (machine, finished) in self.state.where_finished(spec_sha, missing).items():
            blocking = self._blocking(machine, finished or 0.0)
            if blocking:
                self.waiting[blocking] += 1
            else:
                found.add(episode_id)
        return found

    def _blocking(self, machine: str, finished: float) -> str | None:
        """The machine that may still push the record (None: nothing may)."""
        if machine in self.lost_machines:
            return None
        if not machine:  # unknown: every syncing machine must have pushed since
            return next((m for m in sorted(self.syncing - self.lost_machines) if not self._pushed_since(m, finished)),
                        None)
        if machine == self.this_machine and machine not in self.syncing:
            return None  # written straight into this tree
        return None if self._pushed_since(machine, finished) else machine

    def _pushed_since(self, machine: str, finished: float) -> bool:
        started, commit = self.pushed.get(machine, (0.0, ""))
        if started <= finished:
            return False
        if machine not in self._checked:
            self._require_in_clone(machine, commit)
            self._checked.add(machine)
        return True

    def _require_in_clone(self, machine: str, commit: str) -> None:
        """Refuse to call a record lost from a clone that lacks the push that carried it."""
        if not commit:
            return
        try:
            result = subprocess.run(["git", "-C", str(self.results_dir), "merge-base", "--is-ancestor", commit, "HEAD"],
                                    capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UserError(f"--reconcile: cannot ask git about {self.results_dir}: {exc}") from None
        if "not a git repository" in result.stderr:
            raise UserError(f"--reconcile: {self.results_dir} is not a git clone, so it cannot show what "
                            f"{machine} pushed; run it in a pulled clone of the results repository")
        if result.returncode != 0:
            raise UserError(f"--reconcile: the results clone {self.results_dir} lacks {machine}'s last push "
                            f"({commit[:12]}); pull it first (git -C {self.results_dir} pull), so that a record "
                            f"it pushed is not called lost")

    def waiting_lines(self) -> list[str]:
        """At 80 columns: per machine, the missing records it may still push."""
        lines = []
        for machine, n in sorted(self.waiting.items()):
            lines += textwrap.wrap(f"{n:,} missing here may still come from {machine} (no push since they "
                                   f"ended); --lost-machine {machine} if its disk is gone", 80,
                                   initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False)
        return lines
