"""What ``producer dead`` prints: a summary by reason, or the letters one line each, within 80
columns. Episode ids are never cut (they are what a person copies); details wrap instead."""

from __future__ import annotations

import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

WIDTH = 80


def when(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) if seconds else "-" * 19


def wrapped(text: str, indent: str) -> list[str]:
    """Every line of ``text`` kept whole, wrapped at 80 columns (a traceback-like detail keeps
    its line breaks)."""
    lines = []
    for line in str(text).splitlines() or [""]:
        lines += textwrap.wrap(line, WIDTH, initial_indent=indent, subsequent_indent=indent + "  ",
                               break_on_hyphens=False, break_long_words=True) or [indent]
    return lines


def policy_of(entry: dict[str, Any]) -> str | None:
    episode = entry.get("episode_id")
    return episode.split("/", 1)[0] if isinstance(episode, str) and "/" in episode else None


@dataclass
class ReasonGroup:
    reason: str
    count: int = 0
    first: float | None = None
    last: float | None = None
    example: str | None = None  # an episode id of the latest letter that names one
    detail: str = ""  # the latest letter's
    policies: Counter = field(default_factory=Counter)

    def add(self, entry: dict[str, Any]) -> None:
        self.count += 1
        at = entry.get("time")
        if isinstance(at, int | float):
            self.first = at if self.first is None else min(self.first, at)
            if self.last is None or at >= self.last:
                self.last, self.detail = at, str(entry.get("detail", ""))
                self.example = entry.get("episode_id") or self.example
        if (policy := policy_of(entry)) is not None:
            self.policies[policy] += 1


def by_reason(entries: list[dict[str, Any]]) -> list[ReasonGroup]:
    """Groups, the largest first."""
    groups: dict[str, ReasonGroup] = {}
    for entry in entries:
        reason = str(entry.get("reason", "?"))
        groups.setdefault(reason, ReasonGroup(reason)).add(entry)
    return sorted(groups.values(), key=lambda g: (-g.count, g.reason))


def summary_lines(entries: list[dict[str, Any]], known_policies: set[str] | None) -> list[str]:
    """Per reason: count, first and last time, an example id, the policies (``unknown`` for a
    name no worker announced and this machine cannot load) and the latest detail."""
    groups = by_reason(entries)
    if not groups:
        return ["no dead letters"]
    width = max(6, *(len(g.reason) for g in groups))
    lines = [f"{len(entries):,} dead letters, {len(groups)} reason{'s' if len(groups) != 1 else ''}",
             f"{'reason':<{width}}  {'count':>6}  {'first':<19}  last"]
    for group in groups:
        lines.append(f"{group.reason:<{width}}  {group.count:>6,}  {when(group.first)}  {when(group.last)}")
        if group.example:
            lines += wrapped(f"e.g. {group.example}", "  ")
        if group.policies:
            names = [f"{name} (unknown)" if known_policies is not None and name not in known_policies else name
                     for name, _ in group.policies.most_common()]
            lines += wrapped(f"policies: {', '.join(names)}", "  ")
        lines += wrapped(f"latest: {group.detail}", "  ")
    return lines


def listing_lines(entries: list[dict[str, Any]], limit: int | None) -> list[str]:
    """The letters by reason, oldest first, one line each: the full episode id alone, so that it
    fits (``--json`` has each letter's time and message). The detail and the worker are printed
    above, wrapped, whenever they differ from the previous letter's."""
    lines: list[str] = []
    shown = 0
    for group in by_reason(entries):
        if limit is not None and shown >= limit:
            break
        letters = sorted((e for e in entries if str(e.get("reason", "?")) == group.reason),
                         key=lambda e: e.get("time") or 0)
        lines.append(f"{group.reason}: {group.count:,}, {when(group.first)} .. {when(group.last)}")
        previous = None
        for entry in letters[:None if limit is None else limit - shown]:
            about = f"{entry.get('detail', '')} (worker {entry.get('worker', '?')})"
            if about != previous:
                lines += wrapped(about, "    ")
                previous = about
            lines.append(f"  {entry.get('episode_id') or '(no episode id)'}")
            shown += 1
    if limit is not None and shown < len(entries):
        lines.append(f"... {len(entries) - shown:,} more (--limit 0 lists all)")
    return lines
