"""Queue performance against baselines measured in the same run (issue 4).

1. enqueue of the full spec (50,000 episodes, one policy) vs a raw Redis pipeline LPUSH of
   the same payloads (target <= 5x the raw pipeline, and under 10 s);
2. re-enqueue with nothing new (target under 3 s);
3. end-to-end throughput of zero-cost episodes through ``python -m worker`` vs a trivial Celery
   task with the same reliability settings (target >= 0.7x, issue 24; each side's best of three
   interleaved rounds: a two-core machine's own speed moves by a fifth between minutes);
4. makespan of a heterogeneous workload (sleep proportional to the step limit) on 8 workers vs
   the lower bound max(total/8, longest) (target <= 1.05x), next to the same workload split
   statically by ``--worker-id`` round robin (computed from the same durations).

    .venv/bin/python tests/perf/perf_queue.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import redis

from benchmark.records.episodes import iter_episodes, partition
from benchmark.spec.spec_file import load_spec
from producer.embedded import EmbeddedRedis
from producer.enqueue import plan_enqueue
from worker.queue.publish import CHUNK, MessageBuilder, publish, publish_ids
from worker.queue.state import QueueState

PLUGIN = '''
import os, time
from benchmark.backends.base import Backend, ExpertPlan
from benchmark.policies.base import PolicyAdapter


class NullBackend(Backend):
    """Zero-cost episodes; with RTBENCH_PERF_SECONDS_PER_STEP, sleeps step_limit x that."""
    name = "null"

    def setup_demo(self, task, seed, step_limit):
        self.task, self.step_lim, self.take_action_cnt, self.eval_success = task, step_limit, 0, False
        self._sleep = float(os.environ.get("RTBENCH_PERF_SECONDS_PER_STEP", "0")) * step_limit

    def get_obs(self):
        return {"joint_action": {"vector": [0.0] * 14}}

    def take_action(self, action, action_type="qpos"):
        if self._sleep:
            time.sleep(self._sleep)
        self.take_action_cnt += 1
        self.eval_success = True

    def check_success(self):
        return self.eval_success

    def plan_expert(self):
        return ExpertPlan(True, [[0.0] * 14])

    def close_env(self):
        pass


class NullPolicy(PolicyAdapter):
    name = "null"

    def load(self, config, device):
        pass

    def reset(self, env, instruction):
        pass

    def step(self, env, observation):
        env.take_action([0.0] * 14)
'''

TRIVIAL_APP = '''
from celery import Celery
from worker.app import celery_config
from worker.settings import Settings

app = Celery("trivial")
app.conf.update(celery_config(Settings.from_env()))


@app.task(name="trivial.noop", acks_late=True)
def noop(**kwargs):
    return None
'''


def make_plugin(root: Path) -> None:
    (root / "rtbench_perfplugin.py").write_text(PLUGIN)
    (root / "trivial_app.py").write_text(TRIVIAL_APP)
    info = root / "rtbench_perfplugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: rtbench-perfplugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent("""
        [rtbench.backends]
        null = rtbench_perfplugin:NullBackend
        [rtbench.policies]
        null = rtbench_perfplugin:NullPolicy
    """))


def measure_enqueue(client: redis.Redis, results: Path) -> None:
    spec = load_spec("full")
    state = QueueState(client)
    plan = plan_enqueue(spec, ["Motus"], results, state, queue="episodes")
    payloads = MessageBuilder("episodes").envelopes("full", spec.sha256, plan.to_send)
    client.flushdb()
    start = time.perf_counter()
    for i in range(0, len(payloads), CHUNK):
        with client.pipeline(transaction=False) as pipe:
            pipe.lpush("raw", *payloads[i:i + CHUNK])
            pipe.execute()
    raw = time.perf_counter() - start
    client.flushdb()
    start = time.perf_counter()
    plan = plan_enqueue(spec, ["Motus"], results, state, queue="episodes")
    publish_ids(client, "full", spec.sha256, plan.to_send, queue="episodes")
    ours = time.perf_counter() - start
    assert client.llen("episodes") == 50_000
    start = time.perf_counter()
    again = plan_enqueue(spec, ["Motus"], results, state, queue="episodes")
    reenqueue = time.perf_counter() - start
    assert not again.to_send
    verdict = "ok" if ours / raw <= 5 and ours < 10 else "FAIL"
    print(f"1. enqueue full spec (50,000 episodes): {ours:.2f} s ({50_000 / ours:,.0f} msg/s)\n"
          f"   vs raw pipeline {raw:.2f} s = {ours / raw:.1f}x   target <= 5x and < 10 s -> {verdict}")
    print(f"2. re-enqueue with nothing new: {reenqueue:.2f} s   target < 3 s -> {'ok' if reenqueue < 3 else 'FAIL'}")
    client.flushdb()


def run_workers(env: dict, count: int, args: list[str], log_dir: Path) -> list[subprocess.Popen]:
    procs = []
    for i in range(count):
        log = open(log_dir / f"w{i}.log", "wb")  # noqa: SIM115
        procs.append(subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(" ready." in (log_dir / f"w{i}.log").read_text(errors="replace") for i in range(count)):
            return procs
        time.sleep(0.1)
    tail = (log_dir / "w0.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"workers did not start:\n{tail}")


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        os.killpg(p.pid, 9)
        p.wait()


def drain_time(client: redis.Redis, total: int, done_key: str | None) -> float:
    start = time.perf_counter()
    while True:
        if done_key is not None:
            if client.scard(done_key) >= total:
                return time.perf_counter() - start
        elif client.llen("episodes") == 0 and client.hlen("unacked") == 0:
            return time.perf_counter() - start
        time.sleep(0.01)


def measure_throughput(client: redis.Redis, env: dict, root: Path, n: int = 500, rounds: int = 3) -> None:
    """Steady state: each side first runs one warm-up message (imports, spec load), then n."""
    from worker.queue.messages import EpisodeMessage

    spec = load_spec("lm20")
    keys = list(iter_episodes(spec, "null"))[: (n + 1) * rounds]
    builder = MessageBuilder("episodes")
    trivial_rate, our_rate = 0.0, 0.0
    for round_ in range(rounds):
        client.flushdb()
        procs = run_workers(env, 1, [sys.executable, "-m", "celery", "-A", "trivial_app", "worker", "--pool=prefork",
                                     "--concurrency=1", "-Q", "episodes", "--without-mingle", "--without-gossip",
                                     "--loglevel=INFO"], root / "trivial")
        try:
            noop = [builder.envelope_for({"i": i}, f"noop-{round_}-{i}").replace("rtbench.run_episode", "trivial.noop")
                    for i in range(n + 1)]
            client.lpush("episodes", noop[0])
            drain_time(client, 1, None)
            client.lpush("episodes", *noop[1:])
            trivial_rate = max(trivial_rate, n / drain_time(client, n, None))
        finally:
            stop(procs)
        client.flushdb()
        procs = run_workers({**env, "RTBENCH_BACKEND": "null"}, 1, [sys.executable, "-m", "worker", "--device", "cpu"],
                            root / "ours")
        try:
            batch = [EpisodeMessage(k, "lm20", spec.sha256) for k in keys[round_ * (n + 1):(round_ + 1) * (n + 1)]]
            publish(client, batch[:1], queue="episodes")
            drain_time(client, 1, f"rtbench:done:{spec.sha256}")
            publish(client, batch[1:], queue="episodes")
            our_rate = max(our_rate, n / drain_time(client, n + 1, f"rtbench:done:{spec.sha256}"))
        finally:
            stop(procs)
    ratio = our_rate / trivial_rate
    print(f"3. throughput, zero-cost episodes (1 worker, best of {rounds}): {our_rate:.0f}/s\n"
          f"   vs a trivial Celery task {trivial_rate:.0f}/s = {ratio:.2f}x"
          f"   target >= 0.7x -> {'ok' if ratio >= 0.7 else 'FAIL'}")


def measure_makespan(client: redis.Redis, env: dict, root: Path, workers: int = 8, scale: float = 0.002) -> None:

    # 5 settings x 50 tasks = 250 episodes of 0.8 to 3.4 s: seconds, as real episodes are minutes.
    spec = load_spec("lm20").filter(settings=[s.id for s in load_spec("lm20").settings[:5]], max_repeat=1)
    keys = list(iter_episodes(spec, "null"))
    durations = {k.id: spec.step_limit(k.task) * scale for k in keys}
    total, longest = sum(durations.values()), max(durations.values())
    bound = max(total / workers, longest)
    static = max(sum(durations[k.id] for k in partition(keys, w, workers)) for w in range(workers))
    client.flushdb()
    procs = run_workers({**env, "RTBENCH_BACKEND": "null", "RTBENCH_PERF_SECONDS_PER_STEP": str(scale),
                         "RTBENCH_PRELOAD_SPECS": "lm20"}, workers,
                        [sys.executable, "-m", "worker", "--device", "cpu"], root / "makespan")
    try:
        plan = plan_enqueue(spec, ["null"], root / "makespan-results", QueueState(client), queue="episodes")
        publish_ids(client, "lm20", spec.sha256, plan.to_send, queue="episodes")
        makespan = drain_time(client, len(keys), f"rtbench:done:{spec.sha256}")
    finally:
        stop(procs)
    print(f"4. makespan, {len(keys)} episodes (step limit x {scale * 1e3:g} ms) on {workers} workers: "
          f"{makespan:.2f} s\n   vs lower bound {bound:.2f} s = {makespan / bound:.2f}x   target <= 1.05x -> "
          f"{'ok' if makespan / bound <= 1.05 else 'FAIL'}\n"
          f"   static round robin would take {static:.2f} s = {static / bound:.2f}x")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_plugin(root)
        for sub in ("trivial", "ours", "makespan"):
            (root / sub).mkdir()
        server = EmbeddedRedis(root / "redis").start()
        try:
            client = redis.Redis.from_url(server.url, decode_responses=True)
            env = {**os.environ, "RTBENCH_BROKER_URL": server.url, "RTBENCH_RESULTS_DIR": str(root / "results"),
                   "RTBENCH_SKIP_EXPERT_CHECK": "1", "RTBENCH_GPU_LOCK_DIR": str(root / "locks"),
                   # Both sides: one child for the whole run. The default (100) recycles children to
                   # contain simulator leaks; with zero-cost episodes its warm-up would dominate.
                   "RTBENCH_MAX_TASKS_PER_CHILD": "10000",
                   "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
            measure_enqueue(client, root / "results")
            measure_throughput(client, env, root)
            measure_makespan(client, {**env, "RTBENCH_RESULTS_DIR": str(root / "makespan-results")}, root)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
