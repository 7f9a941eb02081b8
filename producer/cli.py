"""The producer's command group and what its commands share: the settings and the Redis
connection (``Context``), the SPEC/--policy/slice options, the group's options accepted after
a subcommand, and one line for a Redis failure in the middle of a command. The commands live
in ``producer.cli_queue`` (enqueue, status, verify, dead) and ``producer.cli_run`` (run)."""

from __future__ import annotations

import functools
import logging
from dataclasses import replace

import click
import redis

from benchmark.common.cli_support import UserError, user_errors
from benchmark.common.errors import BenchmarkError
from benchmark.common.names import validate_name
from benchmark.run.settings import check_results_dir
from benchmark.spec.slicing import SpecSlice, slice_options
from benchmark.spec.spec_file import Spec, load_spec
from worker.queue.state import QueueState, connect
from worker.settings import Settings, check_broker_url, redact_url

EXIT_INTERRUPTED = 130


def spec_options(func):
    """SPEC, its policies and its slice: shared by enqueue and run."""
    @click.argument("spec_ref", metavar="SPEC")
    @click.option("--policy", "policies", multiple=True, required=True, help="Policy name (repeatable).")
    @slice_options
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)
    return wrapper


def load_filtered(spec_ref: str, policies: tuple[str, ...], spec_slice: SpecSlice) -> Spec:
    for policy in policies:
        validate_name(policy, "policy")
    try:  # 3x faster on the 25 MB full spec (the report extra has it); json otherwise
        from orjson import loads as fast_loads
    except ImportError:
        fast_loads = None
    return load_spec(spec_ref, fast_loads).filter(spec_slice.settings, spec_slice.tasks, spec_slice.max_repeat)


def _apply_group_option(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """``--broker-url``/``--results-dir`` given after the subcommand: they override the group's."""
    if value is not None:
        try:
            ctx.find_object(Context).apply(**{param.name: value})
        except BenchmarkError as exc:  # raised before the command runs, so not through user_errors
            raise UserError(str(exc)) from None


def group_options(func):
    """The group's options, accepted after the subcommand too (``producer status --results-dir r``)."""
    @click.option("--broker-url", callback=_apply_group_option, expose_value=False,
                  help="Redis URL (env RTBENCH_BROKER_URL); also accepted before the subcommand.")
    @click.option("--results-dir", type=click.Path(), callback=_apply_group_option, expose_value=False,
                  help="Results directory (env RTBENCH_RESULTS_DIR); also accepted before the subcommand.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)
    return wrapper


class Context:
    """The command's settings, and a Redis connection made only when a command needs it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._state: QueueState | None = None

    def apply(self, broker_url: str | None = None, results_dir: str | None = None) -> None:
        """The command's ``--broker-url``/``--results-dir`` over the environment's."""
        if broker_url:
            self.settings = replace(self.settings, broker_url=check_broker_url(broker_url, "--broker-url"))
            self._state = None
        if results_dir:
            self.settings = replace(self.settings, results_dir=check_results_dir(results_dir, "--results-dir"))

    @property
    def state(self) -> QueueState:
        if self._state is None:
            client = connect(self.settings.broker_url)
            url = redact_url(self.settings.broker_url)
            try:
                client.ping()
            except (redis.exceptions.AuthenticationError, redis.exceptions.AuthenticationWrongNumberOfArgsError,
                    redis.exceptions.NoPermissionError) as exc:
                raise UserError(f"the broker at {url} refused the login ({exc}): Redis is running; check the "
                                "password in RTBENCH_BROKER_URL, redis://:PASSWORD@host:6379/0 (REDIS_PASSWORD "
                                "in .env)") from None
            except Exception as exc:
                raise UserError(f"cannot reach the broker at {url} ({exc}); start Redis or set "
                                "RTBENCH_BROKER_URL") from None
            self._state = QueueState(client)
        return self._state


class ProducerGroup(click.Group):
    """The commands, with a failure of Redis in the middle of one said in one line (no traceback)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except redis.exceptions.RedisError as exc:
            url = redact_url(ctx.obj.settings.broker_url) if isinstance(ctx.obj, Context) else "the broker"
            raise click.ClickException(broker_failure(exc, url)) from None


def broker_failure(exc: Exception, url: str) -> str:
    """What a Redis error in the middle of a command means, and what to do."""
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        what = (f"Redis at {url} is full (OOM: {exc}); give it more memory (maxmemory) or let workers drain "
                "the queue")
    elif isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        what = f"lost the broker at {url} ({exc})"
    else:
        what = f"Redis at {url} refused a command ({type(exc).__name__}: {exc})"
    # Publishing sends a message before it notes it as enqueued: nothing noted was left unsent.
    return f"{what}. What was done before stays done; run the same command again once Redis is fine"


@click.group(cls=ProducerGroup, epilog="""\b
Examples:
  python -m producer enqueue lm20 --policy Motus
  python -m producer status lm20 --watch
  python -m producer dead --requeue
  python -m producer run lm20 --policy feedback --tasks adjust_bottle \\
      --max-repeat 2
""")
@click.option("--broker-url", envvar="RTBENCH_BROKER_URL", help="Redis URL (env RTBENCH_BROKER_URL).")
@click.option("--results-dir", envvar="RTBENCH_RESULTS_DIR", type=click.Path(),
              help="Results directory (env RTBENCH_RESULTS_DIR; default results).")
@click.pass_context
@user_errors
def cli(ctx: click.Context, broker_url: str | None, results_dir: str | None) -> None:
    """Put benchmark episodes on the queue and follow them."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = Context(Settings.from_env())
    ctx.obj.apply(broker_url, results_dir)
