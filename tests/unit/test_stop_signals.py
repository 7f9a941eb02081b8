"""producer run's stop signals: each raises Stopped while running, hurries during cleanup, and
a signal inherited as ignored (nohup) stays ignored."""

from __future__ import annotations

import os
import signal

import pytest

from producer.stop_signals import Stopped, StopSignals, exit_status


@pytest.fixture
def default_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also in a suite started in the background
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_each_stop_signal_interrupts_the_run_and_sets_the_exit_status(default_handlers, signum, status):
    with StopSignals() as stops, pytest.raises(Stopped) as stopped:
        os.kill(os.getpid(), signum)
        signal.sigtimedwait([], 0)  # a point where Python runs the handler, at the latest
    assert isinstance(stopped.value, KeyboardInterrupt)  # the Ctrl-C cleanup paths catch it
    assert stops.received == signum and exit_status(stops.received) == status
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored


def test_a_signal_during_the_cleanup_hurries_it_instead_of_interrupting_it(default_handlers):
    with StopSignals() as stops:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            signal.sigtimedwait([], 0)
        except Stopped:
            stops.cleaning_up()
            assert not stops.hurry.is_set()
            os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C: no exception here
            signal.sigtimedwait([], 0)
            assert stops.hurry.is_set()
    assert stops.received == signal.SIGINT


def test_a_signal_inherited_as_ignored_stays_ignored(default_handlers):
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    with StopSignals() as stops:
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGHUP)
        signal.sigtimedwait([], 0)
    assert stops.received is None
