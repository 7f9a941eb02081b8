"""Duty cycle of one policy server shared by k worker slots (issue 24, point 6).

A stand-in policy server behaves like one GPU: it speaks the policy-server protocol of
``benchmark.policies.policy_server`` (websocket, msgpack, a metadata frame on connect), serves
one request at a time and sleeps a fixed latency per call (``--latency-ms``), recording when it
is busy. With ``--batch-growth g`` it serves every request waiting when it frees up as one
batch of b, in ``latency x (1 + g x (b - 1))``: the client protocol sends one observation per
request, so batching can only be the server's, across connections.

Episodes are kinematic ones with a set cost: a plugin backend (``KinematicBackend`` through the
``rtbench.backends`` entry point, as in perf_queue.py) sleeps ``--step-ms`` per simulator step,
ends each episode after ``--actions`` actions, and pays ``--setup-s`` whenever it builds a task
object. Like the robotwin backend it keeps one object per task (at most two tasks) and rebuilds
it only after ``RTBENCH_ENV_REUSE`` scenes; every build is logged, so the repeated set-up cost
after a task's first episode is counted, not assumed. A plugin policy asks the server for a
chunk of ``--chunk`` actions through ``PolicyServerClient`` and executes them.

Measured in the same run, against the same server:

- the sequential baseline, today's loop: one process, one simulator, one policy, the task
  object set up for every episode (``RTBENCH_ENV_REUSE=1``), ``run_episode`` after ``run_episode``;
- k = 1..``--max-slots`` worker slots on the one server: k real ``python -m worker --device cpu``
  processes (a worker has one slot; ``RTBENCH_SLOTS_PER_GPU`` only decides how many may lease
  one GPU), each k on a task of its own (every worker builds its object once, as after a
  start). The policy finds the server through ``RTBENCH_PERF_SERVER``, not a policies file.

For each: wall time from publishing to the last record, the server's busy fraction of that
window, episodes per hour, and the ideal episodes per hour, episodes / total policy time (the
server busy all the time). Both issue targets, busy >= 0.9 and eph >= 0.9x ideal, are the
same ratio (policy time / wall) measured over the same window; both are printed. The
recommended k is the smallest that meets them. The expert check is skipped on both sides
(its verdicts are kept per scene: point 2 of the issue), so only set-up and overlap differ.

    .venv/bin/python tests/perf/perf_duty_cycle.py              # ~100 s on 2 cores
    .venv/bin/python tests/perf/perf_duty_cycle.py --batch-growth 0.1

Prints the parameters, one table row per run, the recommended k, the repeated set-up cost and
whether each target is met; exit status 1 when one is not.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis

from benchmark.policies.policy_server import pack, unpack
from benchmark.records.episodes import EpisodeKey
from benchmark.spec.spec_file import load_spec
from producer.embedded import EmbeddedRedis
from worker.queue.messages import EpisodeMessage
from worker.queue.publish import publish

TARGET_BUSY = 0.9
TARGET_IDEAL = 0.9

PLUGIN = '''
import os, time
import numpy as np
from benchmark.backends.kinematic import KinematicBackend
from benchmark.policies.base import PolicyAdapter
from benchmark.policies.policy_server import PolicyServerClient

KEPT_TASKS = 2  # as the robotwin backend: each kept object holds GPU memory


class TimedKinematic(KinematicBackend):
    """Kinematic episodes with a set cost: a sleep per step, a set-up per task object."""
    name = "timed_kinematic"

    def __init__(self, device="cpu"):
        super().__init__(device)
        self.step_s = float(os.environ["RTBENCH_PERF_STEP_S"])
        self.setup_s = float(os.environ["RTBENCH_PERF_SETUP_S"])
        self.actions = int(os.environ["RTBENCH_PERF_ACTIONS"])
        self.reuse_limit = int(os.environ.get("RTBENCH_ENV_REUSE") or "100")
        self.setup_log = os.environ["RTBENCH_PERF_SETUP_LOG"]
        self._kept = {}  # task -> scenes its object has set up

    def setup_demo(self, task, seed, step_limit):
        served = self._kept.pop(task, None)
        if served is None or served >= self.reuse_limit:  # build the task object
            start = time.perf_counter()
            time.sleep(self.setup_s)
            line = f"{os.getpid()} {task} {time.perf_counter() - start:.4f}\\n"
            with open(self.setup_log, "a") as log:  # O_APPEND: one line per write
                log.write(line)
            served = 0
        if self.reuse_limit > 1:
            self._kept[task] = served + 1
            while len(self._kept) > KEPT_TASKS:
                self._kept.pop(next(iter(self._kept)))
        super().setup_demo(task, seed, min(step_limit, self.actions))

    def take_action(self, action, action_type="qpos"):
        before = self.take_action_cnt
        super().take_action(action, action_type)
        if self.take_action_cnt > before:  # a simulator step was taken
            time.sleep(self.step_s)


class ServedPolicy(PolicyAdapter):
    """A remote policy: one request per action chunk, through the project's client."""
    name = "served"

    def load(self, config, device):
        host, _, port = os.environ["RTBENCH_PERF_SERVER"].rpartition(":")
        self.client = PolicyServerClient(config.get("host", host), int(config.get("port", port)),
                                         request_timeout_s=60.0)
        self.client.get_server_metadata()

    def reset(self, env, instruction):
        self.prompt = instruction or ""

    def step(self, env, observation):
        state = np.asarray(observation["joint_action"]["vector"], dtype=np.float64)
        reply = self.client.infer({"observation/state": state, "prompt": self.prompt})
        for action in reply["actions"]:
            env.take_action(action, action_type="qpos")

    def close(self):
        self.client.close()
'''


# ---------------------------------------------------------------- the stand-in GPU


@dataclass
class _Request:
    observation: dict
    done: threading.Event = field(default_factory=threading.Event)
    reply: dict | None = None


class StandInServer:
    """A websocket policy server with one "GPU": a single thread that serves requests in
    arrival order, one at a time (or the waiting ones as a batch), sleeping the latency."""

    def __init__(self, latency_s: float, batch_growth: float, chunk: int) -> None:
        from websockets.sync.server import serve

        self.latency_s, self.batch_growth, self.chunk = latency_s, batch_growth, chunk
        self.busy: list[tuple[float, float]] = []  # (start, end) of each call or batch
        self.calls = 0
        self._waiting: list[_Request] = []
        self._wake = threading.Condition()
        self._stopped = False
        # Pings off, no compression, no size limit: as the client connects.
        self._server = serve(self._connection, "127.0.0.1", 0, ping_interval=None, compression=None,
                             max_size=None)
        self.port = self._server.socket.getsockname()[1]
        self._threads = [threading.Thread(target=self._server.serve_forever, daemon=True),
                         threading.Thread(target=self._gpu, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _connection(self, websocket) -> None:  # one thread per connection (websockets' sync server)
        from websockets.exceptions import ConnectionClosed

        try:
            websocket.send(pack({"server": "stand-in", "chunk": self.chunk}))
            for frame in websocket:
                request = _Request(unpack(frame))
                with self._wake:
                    self._waiting.append(request)
                    self._wake.notify()
                request.done.wait()
                websocket.send(pack(request.reply))
        except ConnectionClosed:  # the workers are killed at the end, mid-connection
            pass

    def _gpu(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._stopped:
                    self._wake.wait()
                if self._stopped:
                    return
                take = len(self._waiting) if self.batch_growth > 0 else 1
                batch, self._waiting = self._waiting[:take], self._waiting[take:]
            start = time.perf_counter()
            time.sleep(self.latency_s * (1 + self.batch_growth * (len(batch) - 1)))
            for request in batch:  # hold the arm where it is: the episode runs all its actions
                state = np.asarray(request.observation["observation/state"], dtype=np.float64)
                request.reply = {"actions": np.tile(state, (self.chunk, 1))}
            self.busy.append((start, time.perf_counter()))
            self.calls += len(batch)
            for request in batch:
                request.done.set()

    def busy_time(self, start: float, end: float) -> float:
        """Seconds the GPU was busy within [start, end]."""
        return sum(max(0.0, min(b, end) - max(a, start)) for a, b in list(self.busy))

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify()
        self._server.shutdown()


# ---------------------------------------------------------------- runs


@dataclass
class Run:
    label: str
    episodes: int
    wall_s: float
    busy_s: float
    calls: int
    setups: list[tuple[str, str, float]]  # (pid, task, seconds) of every task object built

    @property
    def busy(self) -> float:
        return self.busy_s / self.wall_s

    @property
    def eph(self) -> float:
        return self.episodes / self.wall_s * 3600

    @property
    def ideal_eph(self) -> float:
        return self.episodes / self.busy_s * 3600

    @property
    def repeated_setups(self) -> list[float]:
        """Set-ups after the first of a task in a process: the cost reuse should remove."""
        seen, repeated = set(), []
        for pid, task, seconds in self.setups:
            if (pid, task) in seen:
                repeated.append(seconds)
            seen.add((pid, task))
        return repeated

    def meets(self) -> bool:
        return self.busy >= TARGET_BUSY and self.eph >= TARGET_IDEAL * self.ideal_eph


def read_setups(log: Path, skip: int) -> tuple[list[tuple[str, str, float]], int]:
    lines = log.read_text().splitlines() if log.exists() else []
    rows = [line.split() for line in lines[skip:]]
    return [(pid, task, float(seconds)) for pid, task, seconds in rows], len(lines)


def episodes_of(spec, task: str, count: int) -> list[EpisodeKey]:
    """``count`` episodes of one task: its (setting, repeat) pairs in the spec's order."""
    keys = [EpisodeKey("served", setting.id, task, repeat)
            for repeat in range(spec.repeats) for setting in spec.settings]
    return keys[:count]


def sequential(spec, tasks: list[str], count: int, server: StandInServer, setup_log: Path) -> Run:
    """Today's loop in this process: one simulator, one policy, set-up every episode."""
    from rtbench_perfplugin import ServedPolicy, TimedKinematic

    from benchmark.run.runner import run_episode

    os.environ["RTBENCH_ENV_REUSE"] = "1"  # a new task object for every scene, as before point 1
    backend = TimedKinematic("cpu")
    policy = ServedPolicy()
    policy.load({}, "cpu")
    # One episode of another task first, not counted: torch's first calls, the connection.
    run_episode(spec, episodes_of(spec, tasks[0], 1)[0], policy, backend, skip_expert_check=True)
    _, skip = read_setups(setup_log, 0)
    keys = episodes_of(spec, tasks[1], count)
    calls, start = server.calls, time.perf_counter()
    for key in keys:
        record = run_episode(spec, key, policy, backend, skip_expert_check=True)
        assert record["error"] is None, record["error"]
    end = time.perf_counter()
    policy.close()
    setups, _ = read_setups(setup_log, skip)
    return Run("sequential", count, end - start, server.busy_time(start, end), server.calls - calls, setups)


def start_workers(env: dict, count: int, log_dir: Path) -> list[subprocess.Popen]:
    """Worker i consumes queues slots<i+1>..slots<count>: publishing to slots<k> then keeps
    exactly k workers busy, and one start of the workers serves every k (a start is ~10 s)."""
    procs = []
    for i in range(count):
        queues = ",".join(f"slots{k}" for k in range(i + 1, count + 1))
        log = open(log_dir / f"w{i}.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen([sys.executable, "-m", "worker", "--device", "cpu", "-Q", queues], env=env,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if all(" ready." in (log_dir / f"w{i}.log").read_text(errors="replace") for i in range(count)):
            return procs
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.1)
    stop(procs)
    tail = (log_dir / "w0.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"workers did not start:\n{tail}")


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, 9)
        p.wait()


def slots_run(client: redis.Redis, spec, k: int, task: str, count: int, server: StandInServer,
              setup_log: Path) -> Run:
    done = f"rtbench:done:{spec.sha256}"
    before = client.scard(done)
    _, skip = read_setups(setup_log, 0)
    calls, start = server.calls, time.perf_counter()
    publish(client, [EpisodeMessage(key, "lm20", spec.sha256) for key in episodes_of(spec, task, count)],
            queue=f"slots{k}")
    deadline = start + 300
    while client.scard(done) < before + count:
        if time.perf_counter() > deadline:
            raise RuntimeError(f"k={k}: {client.scard(done) - before} of {count} episodes done after 300 s")
        time.sleep(0.005)
    end = time.perf_counter()
    setups, _ = read_setups(setup_log, skip)
    return Run(f"{k} slot{'s' if k > 1 else ''}", count, end - start, server.busy_time(start, end),
               server.calls - calls, setups)


# ---------------------------------------------------------------- report


def print_report(args: argparse.Namespace, base: Run, runs: list[Run]) -> bool:
    calls = args.actions // args.chunk
    print(f"{'run':<11}{'eps':>5}{'wall s':>8}{'busy':>7}{'eps/h':>9}{'ideal/h':>9}"
          f"{'eph/ideal':>10}{'vs seq':>8}{'setups':>8}")
    for run in [base, *runs]:
        assert run.calls == run.episodes * calls, (run.label, run.calls)  # every episode ran in full
        print(f"{run.label:<11}{run.episodes:>5}{run.wall_s:>8.1f}{run.busy:>7.2f}{run.eph:>9,.0f}"
              f"{run.ideal_eph:>9,.0f}{run.eph / run.ideal_eph:>9.2f}x{run.eph / base.eph:>7.2f}x"
              f"{len(run.setups):>8}")
    one = runs[0]
    cycle = one.wall_s / one.calls  # a slot's time per call: policy + simulator + overheads
    estimate = math.ceil(cycle / (one.busy_s / one.calls))
    recommended = next((run for run in runs if run.meets()), None)
    k = runs.index(recommended) + 1 if recommended else None
    print(f"one slot: {cycle * 1e3:.1f} ms per call, of which the server "
          f"{one.busy_s / one.calls * 1e3:.1f} ms -> k >= {estimate} to fill it")
    if recommended is None:
        print(f"recommended k: none of 1..{len(runs)} meets busy >= {TARGET_BUSY} "
              f"and eph >= {TARGET_IDEAL}x ideal")
    else:
        print(f"recommended k: {k} (the smallest with busy >= {TARGET_BUSY} and "
              f"eph >= {TARGET_IDEAL}x ideal)")
        print(f"  {recommended.eph / base.eph:.2f}x the sequential loop's episodes per hour, "
              f"{recommended.eph / one.eph:.2f}x one slot's")
    base_repeats = base.repeated_setups
    repeats = [s for run in runs for s in run.repeated_setups]
    episodes = sum(run.episodes for run in runs)
    print("repeated set-up after a task's first episode (per process):")
    print(f"  sequential: {len(base_repeats)} of {base.episodes} episodes, {sum(base_repeats):.2f} s "
          f"({sum(base_repeats) / base.wall_s:.0%} of its wall)")
    print(f"  workers:    {len(repeats)} of {episodes} episodes, {sum(repeats):.2f} s")
    if args.batch_growth:
        print("(batching: ideal/h is each run's own policy time, which batches shrink;")
        print(" a k above the recommended one may still add episodes per hour)")
    ok_slots = recommended is not None
    ok_setup = not repeats
    print(f"targets: busy >= {TARGET_BUSY} and eph >= {TARGET_IDEAL}x ideal at the "
          f"recommended k -> {'ok' if ok_slots else 'FAIL'}")
    print(f"         repeated set-up cost 0 after a task's first episode -> "
          f"{'ok' if ok_setup else 'FAIL'}")
    return ok_slots and ok_setup


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=20.0, help="server time per call")
    parser.add_argument("--batch-growth", type=float, default=0.0,
                        help="0: one request at a time; g: a batch of b takes latency x (1 + g (b - 1))")
    parser.add_argument("--step-ms", type=float, default=1.2, help="simulator time per action")
    parser.add_argument("--actions", type=int, default=200, help="actions per episode")
    parser.add_argument("--chunk", type=int, default=20, help="actions per server call")
    parser.add_argument("--setup-s", type=float, default=0.5, help="building one task object")
    parser.add_argument("--episodes", type=int, default=60, help="per k")
    parser.add_argument("--sequential-episodes", type=int, default=12)
    parser.add_argument("--max-slots", type=int, default=4)
    args = parser.parse_args()
    assert args.actions % args.chunk == 0, "--actions must be a multiple of --chunk"
    spec = load_spec("lm20")
    tasks = [t for t in spec.tasks if spec.step_limit(t) >= args.actions]
    server = StandInServer(args.latency_ms / 1e3, args.batch_growth, args.chunk)
    mode = (f"batches of the waiting requests, x(1 + {args.batch_growth:g}(b-1))" if args.batch_growth
            else "one request at a time")
    print(f"policy server: {args.latency_ms:g} ms a call, {mode}")
    print(f"episodes: {args.actions} kinematic actions, {args.chunk} a call, {args.step_ms:g} ms a step;")
    print(f"set-up {args.setup_s:g} s per task object (sequential: every episode)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "rtbench_perfplugin.py").write_text(PLUGIN)
        info = root / "rtbench_perfplugin-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rtbench-perfplugin\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(textwrap.dedent("""
            [rtbench.backends]
            timed_kinematic = rtbench_perfplugin:TimedKinematic
            [rtbench.policies]
            served = rtbench_perfplugin:ServedPolicy
        """))
        (root / "logs").mkdir()
        setup_log = root / "setups.log"
        perf_env = {"RTBENCH_PERF_STEP_S": str(args.step_ms / 1e3), "RTBENCH_PERF_SETUP_S": str(args.setup_s),
                    "RTBENCH_PERF_ACTIONS": str(args.actions), "RTBENCH_PERF_SETUP_LOG": str(setup_log),
                    "RTBENCH_PERF_SERVER": f"127.0.0.1:{server.port}"}
        os.environ.update(perf_env)
        sys.path.insert(0, str(root))
        redis_server = EmbeddedRedis(root / "redis").start()
        procs: list[subprocess.Popen] = []
        try:
            client = redis.Redis.from_url(redis_server.url, decode_responses=True)
            env = {**os.environ, **perf_env, "RTBENCH_BROKER_URL": redis_server.url,
                   "RTBENCH_RESULTS_DIR": str(root / "results"), "RTBENCH_SKIP_EXPERT_CHECK": "1",
                   "RTBENCH_GPU_LOCK_DIR": str(root / "locks"), "RTBENCH_BACKEND": "timed_kinematic",
                   "RTBENCH_PRELOAD_SPECS": "lm20", "RTBENCH_ENV_REUSE": "100",
                   # One pool child for the whole run: a recycled child would build its task
                   # objects again, which is the worker's default policy (100) but not this test.
                   "RTBENCH_MAX_TASKS_PER_CHILD": "10000",
                   "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
            # Started (and idle) before the baseline: their imports do not compete with it.
            procs = start_workers(env, args.max_slots, root / "logs")
            base = sequential(spec, tasks[:2], args.sequential_episodes, server, setup_log)
            # Each k on its own task: every worker builds that task's object once, as after a start.
            runs = [slots_run(client, spec, k, tasks[1 + k], args.episodes, server, setup_log)
                    for k in range(1, args.max_slots + 1)]
        finally:
            stop(procs)
            redis_server.stop()
            server.stop()
    return 0 if print_report(args, base, runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
