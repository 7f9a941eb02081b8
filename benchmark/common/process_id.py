"""This process's id without a system call each time: ``os.getpid`` is one, and a delivery
asked for it four times (system calls cost ~10 us each in a virtual machine). Refreshed in a
forked child (Celery's pool children are forks)."""

from __future__ import annotations

import os

_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def process_id() -> int:
    return _pid
