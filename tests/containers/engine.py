"""A Docker engine of the test's own, and the images it builds without a registry.

No engine runs when a CI machine starts and no registry can be reached, so the test starts
Debian's dockerd with all its state under a temporary folder, makes a Debian base image with
debootstrap (apt works over http, also inside builds), downloads the Python wheels on the host,
and builds the project's images offline. Everything it starts is stopped, everything it wrote
is removed; it talks only to its own engine and the containers that engine runs.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

TOOLS = ("dockerd", "docker", "docker-compose", "debootstrap")
APT_PACKAGES = "docker-compose debootstrap"  # dockerd, containerd, runc and tini come with docker-compose


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources)."""
    for path in [*sorted(Path("/etc/apt").glob("sources.list.d/*")), Path("/etc/apt/sources.list")]:
        with contextlib.suppress(OSError):
            text = path.read_text(encoding="utf-8")
            found = re.search(r"^URIs:\s*(\S+/debian)/?\s*$", text, re.MULTILINE) or \
                re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+/debian)/?\s+bookworm\b", text, re.MULTILINE)
            if found:
                return found[1]
    return "http://deb.debian.org/debian"


class Engine:
    """dockerd with its data, exec root and socket under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_BUILDKIT": "0",
                    "COMPOSE_DOCKER_CLI_BUILD": "0"}
        self._process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        self._log = (self.root / "dockerd.log").open("wb")
        self._process = subprocess.Popen(
            ["dockerd", "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
             "-H", f"unix://{self.socket}", "--pidfile", str(self.root / "dockerd.pid")],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"dockerd exited ({self._process.returncode}): {self.log_tail()}")
            if self.run("docker", "info", check=False, timeout=10).returncode == 0:
                return
            time.sleep(0.5)
        raise RuntimeError(f"dockerd did not answer within {timeout_s:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.root / "dockerd.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def run(self, *args: str, check: bool = True, timeout: float = 600, cwd: Path | None = None,
            input: bytes | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        result = subprocess.run(list(args), capture_output=True, timeout=timeout, cwd=cwd, input=input,
                                env={**self.env, **(env or {})}, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:4])}... failed ({result.returncode}):\n"
                               f"{result.stdout.decode(errors='replace')[-3000:]}\n"
                               f"{result.stderr.decode(errors='replace')[-3000:]}")
        return result

    def stop(self) -> None:
        """Stop every container, then dockerd (SIGTERM, then SIGKILL), then remove its files."""
        if self._process is not None and self._process.poll() is None:
            with contextlib.suppress(Exception):
                ids = self.run("docker", "ps", "-aq", check=False, timeout=30).stdout.decode().split()
                if ids:
                    self.run("docker", "rm", "-f", *ids, check=False, timeout=120)
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=30)
        if getattr(self, "_log", None):
            self._log.close()
        # dockerd unmounts its overlays on the way out; whatever is still mounted goes now.
        for mount in reversed(Path("/proc/mounts").read_text().splitlines()):
            point = mount.split()[1]
            if point.startswith(str(self.root)):
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def import_debian(self, tag: str, timeout_s: float = 600) -> None:
        """A minimal Debian 12 image from debootstrap (the registry's images are out of reach)."""
        rootfs = self.root / "rootfs"
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), debian_mirror()],
                       capture_output=True, check=True, timeout=timeout_s)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(["docker", "import", "-", tag], stdin=tar.stdout, capture_output=True,
                                  env=self.env, timeout=timeout_s, check=False)
        tar.wait()
        if imported.returncode != 0:
            raise RuntimeError(f"docker import failed: {imported.stderr.decode(errors='replace')}")
        shutil.rmtree(rootfs, ignore_errors=True)

    def build(self, context: Path, tag: str, *, dockerfile: str = "Dockerfile", target: str | None = None,
              args: dict[str, str] | None = None) -> None:
        command = ["docker", "build", "-q", "-f", str(context / dockerfile), "-t", tag]
        if target:
            command += ["--target", target]
        for key, value in (args or {}).items():
            command += ["--build-arg", f"{key}={value}"]
        self.run(*command, str(context), timeout=1200)


def copy_tracked_files(repo: Path, destination: Path) -> None:
    """The repository's files as a fresh clone has them (tracked and not ignored), working-tree
    versions: the build context of the test's images."""
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = repo / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def wait_for(what: str, probe, timeout_s: float, interval_s: float = 1.0, diagnose=None):
    """``probe()``'s first truthy value within ``timeout_s``, else an AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s (last: {last!r})"
                         + (f"\n{diagnose()}" if diagnose else ""))


def chown_tree(paths: Sequence[Path], uid: int) -> None:
    for path in paths:
        subprocess.run(["chown", "-R", f"{uid}:{uid}", str(path)], check=True)


def lines(result: subprocess.CompletedProcess) -> Iterator[str]:
    yield from result.stdout.decode(errors="replace").splitlines()
