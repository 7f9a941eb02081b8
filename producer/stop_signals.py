"""How ``producer run`` is stopped: Ctrl-C (SIGINT), ``kill`` (SIGTERM) and a closed terminal or
a dropped ssh session (SIGHUP) all end the run the same way, through its cleanup.

While the run works, each of the three signals raises ``Stopped`` (a ``KeyboardInterrupt``,
so the code that already cleans up on Ctrl-C cleans up on all three). Once the cleanup has
begun, a further signal must not abandon it half way (that is how a second Ctrl-C used to
leave both workers running): it only asks the cleanup to hurry (``hurry`` is set; the
workers are then killed instead of waited for). A signal that the process inherited as
ignored (``nohup``, a background job of a non-interactive shell) stays ignored.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Stopped(KeyboardInterrupt):
    """The run was asked to stop by ``signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_status(signum: int) -> int:
    """What a shell reports for a process ended by ``signum``: 130, 143, 129."""
    return 128 + signum


class StopSignals:
    """Installs the handlers for the duration of a ``with`` block (main thread only)."""

    def __init__(self) -> None:
        self.received: int | None = None  # the first stop signal, which sets the exit status
        self.hurry = threading.Event()
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        for signum in STOP_SIGNALS:
            current = signal.getsignal(signum)
            if current is signal.SIG_IGN:
                continue  # nohup and friends: the user asked for this signal to be ignored
            self._previous[signum] = current
            signal.signal(signum, self._stop)
        return self

    def cleaning_up(self) -> None:
        """From now on a signal hurries the cleanup instead of interrupting it."""
        for signum in self._previous:
            signal.signal(signum, self._hurry)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        raise Stopped(signum)

    def _hurry(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
        self.hurry.set()

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
