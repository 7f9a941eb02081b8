"""The real thing: both images built, compose.yaml brought up on a Docker engine, episodes run.

The test starts its own dockerd (tests/containers/engine.py), builds the tools and worker
images offline from a Debian base, and brings up redis + flower + `worker` scaled to 3 on the
CPU with two simulated GPU indexes, plus the sync service pushing to a bare repository. Then:
`producer enqueue` through the compose service, every episode written exactly once, two
leases and one hot spare (read through the health check itself), Flower's API with and
without the password, the remote holding the records, Redis refusing a client without the
password, and `docker-compose down` leaving nothing running. It needs root and Debian's
docker-compose and debootstrap (scripts/test.sh installs them); under CI it fails without them.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import redis

from tests.containers.engine import Engine, chown_tree, copy_tracked_files, missing_tools, wait_for

pytestmark = [pytest.mark.containers, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
UID = 1000  # the images' default RTBENCH_UID: the clone and the remote belong to it
MACHINE = "testbox"
POLICY = "expert_replay"
SLICE = ["--settings", "bias_lm_always_on,scale_lm_always_on", "--tasks", "click_bell,open_laptop",
         "--max-repeat", "2"]
EXPECTED_EPISODES = 2 * 2 * 2
BASE, REDIS_IMAGE = "rtbench-test/base:local", "rtbench-test/redis:local"
WORKER_IMAGE, TOOLS_IMAGE = "rtbench-test/worker:local", "rtbench-test/tools:local"

REDIS_DOCKERFILE = """\
FROM rtbench-test/base:local
# Debian's Redis, as the registry's image is out of reach; same command line as redis:7.4.
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \\
 && rm -rf /var/lib/apt/lists/* && install -d -o redis -g redis /data
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    missing = missing_tools()
    if missing or os.geteuid() != 0:
        why = (f"missing {', '.join(missing)} (scripts/test.sh installs them with apt-get as root)" if missing
               else "needs root to run dockerd")
        if os.environ.get("CI"):
            pytest.fail(f"the container test cannot run: {why}")
        pytest.skip(why)
    engine = Engine(tmp_path_factory.mktemp("engine"))
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()


@pytest.fixture(scope="module")
def images(engine: Engine, tmp_path_factory: pytest.TempPathFactory):
    """Both images and the test's Redis image, built offline; yields the build context."""
    context = tmp_path_factory.mktemp("context")
    try:
        copy_tracked_files(REPO, context)
        subprocess.run(["bash", "docker/wheelhouse.sh"], cwd=context, env={**os.environ, "PYTHON": sys.executable},
                       check=True, capture_output=True, timeout=900)
        engine.import_debian(BASE)
        (context / "redis.Dockerfile").write_text(REDIS_DOCKERFILE)
        engine.build(context, REDIS_IMAGE, dockerfile="redis.Dockerfile")
        offline = {"BASE_IMAGE": BASE, "TOOLS_BASE_IMAGE": BASE, "PIP_OFFLINE": "1", "TORCH_INDEX_URL": ""}
        engine.build(context, TOOLS_IMAGE, dockerfile="docker/Dockerfile", target="tools", args=offline)
        engine.build(context, WORKER_IMAGE, dockerfile="docker/Dockerfile", target="worker", args=offline)
        yield context
    finally:
        shutil.rmtree(context, ignore_errors=True)  # 250 MB of wheels


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", "-c", "safe.directory=*", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout


@pytest.fixture(scope="module")
def machine(engine: Engine, images: Path, tmp_path_factory: pytest.TempPathFactory):
    """compose.yaml up (hub and worker services on one machine), torn down at the end."""
    root = tmp_path_factory.mktemp("machine")
    remote, clone = root / "results.git", root / "clone"
    git("init", "-q", "--bare", "-b", "main", str(remote))
    git("clone", "-q", str(remote), str(clone))
    (clone / "results").mkdir()
    (clone / "results" / ".gitkeep").write_text("")
    for key, value in (("user.name", "rtbench test"), ("user.email", "test@rtbench.invalid")):
        git("config", key, value, cwd=clone)
    git("add", "results/.gitkeep", cwd=clone)
    git("commit", "-q", "-m", "results repository", cwd=clone)
    git("push", "-q", "origin", "main", cwd=clone)
    git("remote", "set-url", "origin", "/srv/results.git", cwd=clone)  # where the sync service sees it
    deploy_key = root / "deploy_key"
    deploy_key.write_text("not a key: the test's remote is a local path\n")
    chown_tree([remote, clone, deploy_key], UID)
    override = root / "compose.test.yaml"
    override.write_text(textwrap.dedent(f"""\
        # The test machine: Debian's Redis, the CPU with two simulated GPU indexes, a local remote.
        services:
          worker:
            command: ["python", "-m", "worker", "--lease-gpus"]
            environment:
              CUDA_VISIBLE_DEVICES: "0,1"
              RTBENCH_DEVICE: cpu
              RTBENCH_SHUTDOWN_GRACE: "5"
            healthcheck:
              interval: 5s
              start_period: 60s
          sync:
            environment:
              RTBENCH_SYNC_INTERVAL: "5"
            volumes:
              - {remote}:/srv/results.git
        """))
    (root / "empty.env").write_text("")  # never the operator's .env of the working tree
    password = secrets.token_hex(16)
    env = {"REDIS_PASSWORD": password, "FLOWER_BASIC_AUTH": "operator:flower-test-password",
           "RTBENCH_RESULTS_CLONE": str(clone), "RTBENCH_DEPLOY_KEY": str(deploy_key),
           "RTBENCH_WORKER_IMAGE": WORKER_IMAGE, "RTBENCH_TOOLS_IMAGE": TOOLS_IMAGE, "REDIS_IMAGE": REDIS_IMAGE,
           "REDIS_PORT": str(free_port()), "FLOWER_PORT": str(free_port()), "RTBENCH_MACHINE": MACHINE,
           "COMPOSE_PROFILES": "hub"}
    project = f"rtbenchct{secrets.token_hex(3)}"
    compose = ["docker-compose", "--env-file", str(root / "empty.env"), "-p", project,
               "-f", str(images / "compose.yaml"), "-f", str(override)]

    def run(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return engine.run(*compose, *args, check=check, timeout=timeout, cwd=images, env=env)

    def logs() -> str:
        return run("logs", "--no-color", "--tail=40", check=False).stdout.decode(errors="replace")[-6000:]

    up = run("up", "-d", "--no-build", "--scale", "worker=3", "redis", "flower", "worker", check=False)
    assert up.returncode == 0, f"compose up failed:\n{up.stderr.decode(errors='replace')}\n{logs()}"
    handle = {"run": run, "logs": logs, "env": env, "remote": remote, "clone": clone, "project": project}
    try:
        yield handle
    finally:
        run("down", "-v", "--timeout", "20", check=False)
        shutil.rmtree(root, ignore_errors=True)


def containers(engine: Engine, project: str, service: str) -> list[str]:
    found = engine.run("docker", "ps", "-q", "--filter", f"label=com.docker.compose.project={project}",
                       "--filter", f"label=com.docker.compose.service={service}", check=False)
    return found.stdout.decode().split()


def heartbeats(engine: Engine, project: str) -> list[str]:
    """What each worker replica's health check says (exit status and line)."""
    said = []
    for container in containers(engine, project, "worker"):
        result = engine.run("docker", "exec", container, "python", "-m", "worker.heartbeat", check=False)
        said.append(f"{result.returncode} {result.stdout.decode().strip()}")
    return said


def records(clone: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in (clone / "results" / POLICY).rglob("episode_*.json")]


def test_compose_machine_end_to_end(engine: Engine, machine: dict) -> None:
    run, logs, project = machine["run"], machine["logs"], machine["project"]

    # Two replicas lease GPU 0 and GPU 1; the third waits as a hot spare. The health check says so.
    def leases() -> list[str] | None:
        said = heartbeats(engine, project)
        working = sorted(line.split()[2] for line in said if line.startswith("0 ok:") and " working " in line)
        spares = [line for line in said if line.startswith("0 ok:") and " spare, waiting for a GPU " in line]
        return said if working == [f"gpu0@{MACHINE}", f"gpu1@{MACHINE}"] and len(spares) == 1 else None

    said = wait_for("two leased workers and a spare", leases, 180, 2, logs)
    assert len(said) == 3 and all(line.startswith("0 ") for line in said), said

    enqueue = run("run", "--rm", "producer", "enqueue", "lm20", "--policy", POLICY, *SLICE, check=False)
    assert enqueue.returncode == 0, enqueue.stderr.decode(errors="replace") + logs()

    wait_for(f"{EXPECTED_EPISODES} records", lambda: len(records(machine["clone"])) >= EXPECTED_EPISODES, 300, 2, logs)
    done = records(machine["clone"])
    ids = Counter(record["episode_id"] for record in done)
    assert len(ids) == EXPECTED_EPISODES and set(ids.values()) == {1}, ids
    assert all(record["error"] is None for record in done), [r["error"] for r in done if r["error"]]
    assert {record["worker"]["hostname"] for record in done} <= {f"gpu0@{MACHINE}", f"gpu1@{MACHINE}"}
    assert {record["worker"]["machine"] for record in done} == {MACHINE}

    # The status command through compose agrees: everything done, nothing dead.
    status = run("run", "--rm", "producer", "status", "lm20", "--policy", POLICY, *SLICE, check=False)
    assert status.returncode == 0, status.stderr.decode(errors="replace")

    # Flower lists the workers with the password and refuses without it.
    port = machine["env"]["FLOWER_PORT"]
    url = f"http://127.0.0.1:{port}/api/workers?refresh=1"
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=30)
    assert refused.value.code == 401
    login = base64.b64encode(machine["env"]["FLOWER_BASIC_AUTH"].encode()).decode()

    def flower_workers() -> set[str] | None:
        request = urllib.request.Request(url, headers={"Authorization": f"Basic {login}"})
        try:
            names = set(json.load(urllib.request.urlopen(request, timeout=30)))
        except (OSError, ValueError):
            return None
        return names if {f"gpu0@{MACHINE}", f"gpu1@{MACHINE}"} <= names else None

    wait_for("Flower listing both workers", flower_workers, 60, 2, logs)

    # The sync service pushed every record to the (bare) results repository.
    def pushed() -> int:
        tree = git("--git-dir", str(machine["remote"]), "ls-tree", "-r", "--name-only", "main")
        return sum(1 for name in tree.splitlines() if name.startswith(f"results/{POLICY}/"))

    wait_for("the records in the remote", lambda: pushed() >= EXPECTED_EPISODES, 120, 2, logs)
    assert pushed() == EXPECTED_EPISODES

    # Redis answers with the password only.
    port = int(machine["env"]["REDIS_PORT"])
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=10).ping()
    assert redis.Redis(host="127.0.0.1", port=port, password=machine["env"]["REDIS_PASSWORD"],
                       socket_timeout=10).ping()

    down = run("down", "-v", "--timeout", "20", check=False)
    assert down.returncode == 0, down.stderr.decode(errors="replace")
    left = engine.run("docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}")
    assert left.stdout.decode().split() == []
