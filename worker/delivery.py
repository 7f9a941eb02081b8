"""One delivery of an episode message, made idempotent, with one outcome whatever it raises.

Every delivery ends in exactly one of (docs/design.md "Delivery"):

- a record, written atomically (an episode in the done-set, or with a done record on disk,
  counts: the delivery is skipped);
- a re-delivery: ``Defer`` (the episode is claimed by another delivery: the claim may belong to
  a worker killed a second ago, so this copy is kept), ``Retry`` (an infrastructure failure or
  an unexpected exception, attempts counted, with backoff) or ``Blocked`` (this machine cannot
  write records: the message goes back to the queue uncounted and the worker pauses);
- a dead letter with its reason and the message (malformed, wrong spec, unknown policy, or an
  unexpected exception that outlasted the attempts).

Redis errors propagate: the task sends the message back to the queue. An episode whose worker
died ``max_attempts`` times is recorded as ``worker_lost`` instead of looping.
"""

from __future__ import annotations

import errno
import logging
import time
import traceback
from dataclasses import dataclass
from typing import Any

import redis

from benchmark.backends import backend_class
from benchmark.backends.base import Backend
from benchmark.common.errors import BenchmarkError
from benchmark.common.process_id import process_id
from benchmark.media.recorder import MediaRecorder
from benchmark.policies import PolicyError, load_policy
from benchmark.policies.base import PolicyAdapter
from benchmark.policies.policies_file import PoliciesFile
from benchmark.records.episode_errors import RetryableEpisodeError
from benchmark.records.episodes import EpisodeKey
from benchmark.records.results import counts_as_done, episode_done, write_record
from benchmark.records.stop_notes import outcome_code
from benchmark.records.time_use import episode_sums
from benchmark.run.runner import infrastructure_failure_record, run_episode
from benchmark.spec.spec_file import Spec, load_spec
from worker.finisher import Finisher
from worker.queue.messages import EpisodeMessage, MalformedMessage, parse_message
from worker.queue.state import DONE_ALREADY, STOPPED_ALREADY, QueueState, connect
from worker.queue.stop_rules import StopRules
from worker.queue.verdicts import FleetVerdicts
from worker.settings import Settings
from worker.stop_check import StopCheck

log = logging.getLogger(__name__)
SLOT_CAP_DELAY_S = 5.0  # a capped policy's message waits this long before another worker may take it

SKIPPED, RAN, DEAD, GAVE_UP = "skipped", "ran", "dead", "gave_up"  # what a delivery did
WITHDRAWN = "withdrawn"  # its episode was stopped (a stop rule, a purge): acknowledged unrun

class DeadLetter(Exception):
    """A message that can never run: it goes to the dead-letter list with ``reason``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class Defer(Exception):
    """The episode is claimed by another delivery: look again after ``delay`` seconds."""

    def __init__(self, delay: float, owner: str | None) -> None:
        super().__init__(f"claimed by {owner}")
        self.delay, self.owner = delay, owner


class SlotCapped(Defer):
    """The policy may use fewer slots of a GPU than this worker's: leave it to a lower slot."""

    def __init__(self, delay: float, policy: str, cap: int, slot: int) -> None:
        Exception.__init__(self, f"policy {policy!r} may use {cap} slot(s) of a GPU and this worker holds slot "
                                 f"{slot}; a worker on a lower slot takes it")
        self.delay, self.owner = delay, None


class Retry(Exception):
    """A failure with attempts left: run again after ``delay`` seconds."""

    def __init__(self, delay: float, cause: str) -> None:
        super().__init__(cause)
        self.delay, self.cause = delay, cause


class Blocked(Exception):
    """This worker cannot finish episodes now (its results folder cannot be written): the
    message goes back to the queue, its attempt uncounted, and the worker pauses."""

    def __init__(self, reason: str, path: str) -> None:
        super().__init__(f"{reason} ({path})")
        self.reason, self.path = reason, path


class ChildContext:
    """What one worker child keeps between episodes: settings, Redis, specs, policies, backend.

    Nothing here connects or starts on construction (Redis connects on first use, the finisher
    thread on first record, policies and backend on first episode), so ``python -m worker``
    builds it in the main process with the specs preloaded and every forked child (recycled
    every max_tasks_per_child episodes) inherits them instead of parsing a spec (~1 s) again.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = QueueState(connect(settings.broker_url))
        self.device = settings.torch_device
        self._specs: dict[str, Spec] = {}
        self._policies: dict[str, PolicyAdapter] = {}
        # Parsed (not imported) in the main process: checked there at start, inherited by children.
        self.policies_file = PoliciesFile.load(settings.policies_file) if settings.policies_file else None
        self._backend: Backend | None = None
        self._recorder: MediaRecorder | None = None
        self.finisher = Finisher(self.state, StopCheck(StopRules(self.state.r), settings.results_dir,
                                                       settings.machine))

    def preload_specs(self, refs: tuple[str, ...]) -> None:
        """Load specs now (a bad one raises ``BenchmarkError``: the worker stops at start)."""
        for ref in refs:
            self._specs[ref] = load_spec(ref)

    def spec(self, message: EpisodeMessage) -> Spec:
        spec = self._specs.get(message.spec_ref)
        if spec is None:
            try:
                spec = self._specs[message.spec_ref] = load_spec(message.spec_ref)
            except BenchmarkError as exc:
                raise DeadLetter("spec_unavailable", str(exc)) from None
        if spec.sha256 != message.spec_sha256:
            raise DeadLetter("spec_mismatch", f"the message expects {message.spec_ref} with sha256 "
                             f"{message.spec_sha256[:12]}..., this worker's file has {spec.sha256[:12]}...; "
                             "update this machine's checkout or re-enqueue")
        key = message.key
        if not spec.contains(key.setting_id, key.task, key.repeat_idx):
            raise DeadLetter("not_in_spec", f"{key} is not an episode of {message.spec_ref}")
        return spec

    def policy(self, name: str) -> PolicyAdapter:
        """The loaded adapter; an unknown name is a dead letter, any other failure to load
        (a RuntimeError in ``load``, CUDA failing to start) propagates and is retried."""
        if name not in self._policies:
            try:
                self._policies[name] = load_policy(name, {}, self.device, self.policies_file,
                                                   self.settings.worker_slot)
            except PolicyError as exc:
                raise DeadLetter("unknown_policy", str(exc)) from None
        return self._policies[name]

    def slot_cap(self, policy: str) -> int | None:
        """How many slots of one GPU the policy may use (its policies-file ``slots_per_gpu``)."""
        entry = self.policies_file.entries.get(policy) if self.policies_file is not None else None
        return entry.slots_per_gpu if entry is not None else None

    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = backend_class(self.settings.backend)(self.device)
        return self._backend

    def recorder(self) -> MediaRecorder:
        """The episode videos of this process (made in the child: it sweeps what a killed
        predecessor of this host left half-written)."""
        if self._recorder is None:
            self._recorder = MediaRecorder(self.settings.video_settings())
        return self._recorder

    def worker_info(self, hostname: str) -> dict[str, Any]:
        return {"machine": self.settings.machine, "hostname": hostname, "pid": process_id(),
                "gpu": self.settings.leased_gpu, "device": self.device,
                **({"gpu_slot": self.settings.leased_slot, "slots_per_gpu": self.settings.slots_per_gpu}
                   if self.settings.slots_per_gpu > 1 else {})}


@dataclass
class _Progress:
    """How far a delivery got, for the handler of an unexpected exception."""

    episode_id: str | None = None
    attempt: int = 0  # counted by our claim; 0 until the episode is claimed


def deliver(ctx: ChildContext, args: tuple, kwargs: dict, *, hostname: str, delivery_id: str) -> str:
    """Handle one delivery; returns what happened.

    Raises ``Defer``/``Retry`` to re-publish, ``Blocked`` or ``redis.RedisError`` to send the
    message back to the queue. Any other exception is counted as an attempt and retried, then
    dead-lettered with its traceback: nothing a delivery raises leaves it without a trace.
    """
    progress = _Progress()
    try:
        return _deliver(ctx, args, kwargs, hostname, delivery_id, progress)
    except DeadLetter as dead:
        log.warning("dead letter (%s): %s", dead.reason, dead.detail)
        ctx.state.dead_letter(dead.reason, dead.detail, message={"args": args, "kwargs": kwargs},
                              episode_id=progress.episode_id, worker=hostname)
        return DEAD
    except (Defer, Retry, Blocked, redis.RedisError):
        raise
    except Exception as exc:
        return _unexpected(ctx, args, kwargs, exc, hostname, progress)


def _deliver(ctx: ChildContext, args: tuple, kwargs: dict, hostname: str, delivery_id: str,
             progress: _Progress) -> str:
    """The protocol: admit -> claim (or defer, or skip a done episode) -> run or give up -> commit."""
    message, spec = _admit(ctx, args, kwargs, progress)
    key = message.key
    claim = _claim_or_defer(ctx, spec, key.id, hostname, delivery_id)
    if claim is None:  # in the done-set: done here or on another machine
        return SKIPPED
    if claim is WITHDRAWN:  # enqueue --resume-stopped sends it again
        log.info("%s: stopped (its slice was withdrawn); not run", key.id)
        return WITHDRAWN
    with claim:
        progress.attempt = claim.attempt
        # A record here that the done-set lacks (its mark still on the way, or lost with a
        # Redis restart), looked for under the claim: another delivery may have finished it and
        # released its claim a moment ago. Never run an episode twice to completion.
        if episode_done(key, ctx.settings.results_dir):
            ctx.state.mark_done(spec.sha256, key.id, claim.owner)
            claim.settled = True
            return SKIPPED
        record, outcome = _run_or_give_up(ctx, spec, key, claim, hostname)
        _commit(ctx, spec, key, record, claim, hostname)
        return outcome


def _admit(ctx: ChildContext, args: tuple, kwargs: dict, progress: _Progress) -> tuple[EpisodeMessage, Spec]:
    """The message's episode and spec. Raises ``DeadLetter`` for a message that can never run,
    ``SlotCapped`` for one this worker's slot may not run."""
    try:
        message = parse_message(args, kwargs)
    except MalformedMessage as bad:
        raise DeadLetter(bad.reason, bad.detail) from None
    progress.episode_id = message.key.id
    spec = ctx.spec(message)
    cap, slot = ctx.slot_cap(message.key.policy), ctx.settings.leased_slot
    if cap is not None and slot is not None and slot >= cap:
        raise SlotCapped(SLOT_CAP_DELAY_S, message.key.policy, cap, slot)
    return message, spec


class _Claim:
    """This delivery's claim on the episode. Leaving the block releases it unless a step
    settled it; a shutdown (the pool child stopped by a signal) gives it back uncounted."""

    def __init__(self, state: QueueState, settings: Settings, episode_id: str, owner: str, attempt: int,
                 previous_error: str | None) -> None:
        self.state, self.settings, self.episode_id, self.owner = state, settings, episode_id, owner
        self.attempt, self.previous_error = attempt, previous_error
        self.settled = False
        self._claimed_at = time.monotonic()

    def __enter__(self) -> _Claim:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, _tb: object) -> None:
        if self.settled:
            return
        if isinstance(exc, SystemExit) and _stopped_by_signal(exc):
            self._give_back()
        else:
            self.state.release(self.episode_id, self.owner)

    def give_back_uncounted(self) -> None:
        """The machine's fault, not the episode's: release the claim and take back its attempt."""
        self.state.unclaim(self.episode_id, self.owner)
        self.settled = True

    def _give_back(self) -> None:
        """Cancelled by the parent: at a shutdown (the soft window is over) uncounted, so that
        another worker starts it at once; at the hard time limit (the same signal) it was an
        attempt, and the parent notes the timeout (worker.tasks)."""
        if time.monotonic() - self._claimed_at >= self.settings.hard_time_limit_s - 1:
            return
        try:
            self.give_back_uncounted()
        except redis.RedisError:
            log.warning("could not give back %s; its claim expires by itself", self.episode_id)


def _claim_or_defer(ctx: ChildContext, spec: Spec, episode_id: str, hostname: str,
                    delivery_id: str) -> _Claim | str | None:
    """Our claim; None when the episode is in the done-set, WITHDRAWN when in the stopped set
    (nothing claimed or counted)."""
    owner = f"{hostname}:{process_id()}:{delivery_id}"
    attempt, detail = ctx.state.claim(spec.sha256, episode_id, owner,
                                      ctx.settings.claim_ttl_s, hostname)
    if attempt == DONE_ALREADY:
        return None
    if attempt == STOPPED_ALREADY:
        return WITHDRAWN
    if attempt < 0:
        # Paused: the parent stops consuming; a deferred copy may still arrive.
        # Nothing was claimed or counted.
        raise Blocked(detail["reason"], detail["path"])
    if not attempt:
        raise Defer(ctx.settings.defer_delay_s, detail)
    return _Claim(ctx.state, ctx.settings, episode_id, owner, attempt, detail)


def _run_or_give_up(ctx: ChildContext, spec: Spec, key: EpisodeKey, claim: _Claim,
                    hostname: str) -> tuple[dict[str, Any], str]:
    """(record, outcome): the episode run, or its infrastructure-error record once the attempts
    are used up. Raises ``Retry`` for an infrastructure failure with attempts left."""
    settings = ctx.settings
    worker = ctx.worker_info(hostname)
    if claim.attempt > settings.max_attempts:  # its workers died: record why instead of looping
        last = claim.previous_error or "worker_lost: its worker died while running it"
        label, _, detail = last.partition(": ")
        error = RetryableEpisodeError(label, f"{detail} ({settings.max_attempts} attempts)")
        return infrastructure_failure_record(spec, key, error, backend_name=settings.backend,
                                             attempt=claim.attempt - 1, worker=worker), GAVE_UP
    # Loaded under the claim, so that a policy or backend failing to load counts attempts.
    policy, backend = ctx.policy(key.policy), ctx.backend()
    verdicts = FleetVerdicts(ctx.state.r) if settings.expert_cache else None
    with ctx.state.heartbeat(key.id, claim.owner, settings.claim_ttl_s):
        try:
            return run_episode(spec, key, policy, backend, skip_expert_check=settings.skip_expert_check,
                               timeout_s=settings.episode_timeout_s, attempt=claim.attempt, worker=worker,
                               verdicts=verdicts, recorder=ctx.recorder()), RAN
        except RetryableEpisodeError as exc:
            if settings.retry.has_attempts_left(claim.attempt):
                ctx.state.note_error(key.id, str(exc))
                raise Retry(settings.retry.delay_s(claim.attempt), str(exc)) from exc
            return infrastructure_failure_record(spec, key, exc, backend_name=settings.backend,
                                                 attempt=claim.attempt, worker=worker), GAVE_UP


def _commit(ctx: ChildContext, spec: Spec, key: EpisodeKey, record: dict[str, Any], claim: _Claim,
            hostname: str) -> None:
    """Write the record atomically; the finisher makes it durable, then marks it in Redis.
    A record that cannot be written is the machine's fault: ``Blocked``."""
    settings = ctx.settings
    try:
        path = write_record(settings.results_dir, record, durable=False)
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:  # the episode's name, not the machine
            raise DeadLetter("unwritable_name", f"{key.id}: {exc}") from None
        reason = f"results folder not writable: {exc.strerror or exc}"
        target = key.result_path(settings.results_dir).parent
        log.error("%s: record of %s not written (%s); the message goes back to the queue", hostname, key.id, reason)
        ctx.state.block_worker(hostname, machine=settings.machine, reason=reason, path=str(target),
                               ttl_s=settings.block_ttl_s)
        claim.give_back_uncounted()
        raise Blocked(reason, str(target)) from exc
    # The file's and the folder's fsync (which make the record survive a crash of the machine)
    # cost a millisecond: the finisher does them in the background, then marks it finished.
    sums = episode_sums(record)
    done = counts_as_done(record)
    ctx.finisher.submit(path, spec.sha256, key.id, claim.owner, done=done,
                        time_use=None if sums is None else (settings.machine, sums),
                        outcome=outcome_code(record, done))
    claim.settled = True


def _stopped_by_signal(exc: SystemExit) -> bool:
    """billiard's children turn a terminating signal into ``SystemExit(-(256 - signum))``."""
    return isinstance(exc.code, int) and exc.code < 0


def _unexpected(ctx: ChildContext, args: tuple, kwargs: dict, exc: Exception, hostname: str,
                progress: _Progress) -> str:
    """An exception nobody planned for: retried while attempts are left, then a dead letter."""
    settings, state = ctx.settings, ctx.state
    text = f"{type(exc).__name__}: {exc}"
    episode = progress.episode_id
    if episode is not None:
        if progress.attempt:
            attempt = progress.attempt
            state.note_error(episode, f"delivery_failed: {text}")
        else:
            attempt = state.count_failure(episode, f"delivery_failed: {text}")
        if settings.retry.has_attempts_left(attempt):
            log.warning("%s: attempt %d failed (%s)", episode, attempt, text, exc_info=True)
            raise Retry(settings.retry.delay_s(attempt), text) from exc
        text = f"{text} (after {attempt} attempts)"
    log.error("dead letter (delivery_failed): %s: %s", episode, text, exc_info=True)
    state.dead_letter("delivery_failed", text, message={"args": args, "kwargs": kwargs}, episode_id=episode,
                      worker=hostname, traceback=traceback.format_exc())
    return DEAD
