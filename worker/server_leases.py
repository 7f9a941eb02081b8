"""One worker per policy server: a lease on the server's address in Redis, for the worker's life.

A stateful policy server (LingBot-VA keeps its cache per server) must serve one worker: two
workers interleaving ``reset`` and steps on it corrupt episodes without an error. So a worker
leases, when it starts, the address of every policy server its policies file points it at
(``keys.policy_server``: the worker, the policy, the machine), renews the leases
on Celery's event heartbeat while it lives and releases them when it stops; the leases of a
worker killed outright lapse ``RTBENCH_SERVER_LEASE_TTL`` seconds later. A second worker
reaching a leased address stops at start, naming both. Entries marked ``server_shared: true``
(a stateless server many may share) are not leased.

Addresses compare as host:port, without a scheme or path; a loopback host (localhost, 127.x,
::1, 0.0.0.0) is a machine's own, so it is qualified by the machine (``RTBENCH_MACHINE``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import textwrap
import time
from dataclasses import dataclass

import redis

from benchmark.common.errors import BenchmarkError
from benchmark.policies.policies_file import PoliciesFile, WorkerSlot
from worker.queue import keys

log = logging.getLogger(__name__)

# Taken when the address is free or already this worker's (a restarted worker of the same
# slot has the same name): returns the holder's JSON otherwise, nil when taken.
_ACQUIRE = """
local held = redis.call('GET', KEYS[1])
if held and cjson.decode(held)['worker'] ~= ARGV[1] then return held end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return false
"""
_RELEASE = """
local held = redis.call('GET', KEYS[1])
if held and cjson.decode(held)['worker'] == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_LOOPBACK = {"localhost", "::1", "0.0.0.0", ""}


class ServerTaken(BenchmarkError):
    """Another worker holds the lease of a policy server this worker would use."""


def lease_address(address: str, machine: str) -> str:
    """``address`` as leases compare it: ``ws://LocalHost:8000/x`` -> ``localhost@<machine>:8000``."""
    text = address.strip().split("://", 1)[-1].split("/", 1)[0]
    host, colon, port = text.rpartition(":")
    if not colon or "]" in port:  # no port (or a bare IPv6 address)
        host, port = text, ""
    host = host.strip("[]").lower()
    if host in _LOOPBACK or host.startswith("127."):
        host = f"localhost@{machine}"
    return f"{host}:{port}" if port else host


def servers_to_lease(policies_file: PoliciesFile, slot: WorkerSlot | None, machine: str) -> dict[str, str]:
    """Leased address -> policy, for every policy server this worker may talk to: not the
    shared ones, nor those of policies whose ``slots_per_gpu`` leaves this worker's slot out."""
    wanted: dict[str, str] = {}
    for entry in policies_file.entries.values():
        if entry.server_shared:
            continue
        if entry.slots_per_gpu is not None and slot is not None and slot.slot >= entry.slots_per_gpu:
            continue  # this worker never runs it (worker/delivery.py, SlotCapped)
        address = entry.server_address(slot=slot)
        if address is not None:
            wanted.setdefault(lease_address(address, machine), entry.name)
    return wanted


@dataclass
class ServerLeases:
    client: redis.Redis
    worker: str                # this worker's name, gpu0.1@machine
    machine: str
    servers: dict[str, str]    # leased address -> policy
    ttl_s: float
    _renewed: float = float("-inf")

    def acquire(self, wait_log_s: float = 60.0) -> None:
        """Lease every server, waiting for Redis when it is not up yet; raises ``ServerTaken``
        (holding none of them) when another worker holds one."""
        last_log = float("-inf")
        while True:
            try:
                held = self._try_all()
                break
            except redis.ConnectionError as exc:
                if time.monotonic() - last_log >= wait_log_s:
                    log.warning("cannot reach Redis to lease the policy servers (%s); waiting", exc)
                    last_log = time.monotonic()
                time.sleep(1.0)
        if held is not None:
            address, policy, holder = held
            hint = textwrap.fill(
                f"its server {address} (policy {policy!r}) serves one worker: give each slot its own "
                "(e.g. server: \"host:{8000 + slot}\", docs/robotwin.md, section 2) or, for a stateless "
                "server, set server_shared: true", 78, initial_indent="  ", subsequent_indent="  ")
            raise ServerTaken(f"{self.worker} stops: its policy server is leased by {holder.get('worker')}\n"
                              f"{hint}")
        self._renewed = time.monotonic()
        if self.servers:
            log.info("worker %s leased policy servers %s", self.worker, ", ".join(sorted(self.servers)))

    def _try_all(self) -> tuple[str, str, dict] | None:
        taken: list[str] = []
        for address, policy in sorted(self.servers.items()):
            holder = self._take(address, policy)
            if holder is not None:
                for mine in taken:
                    self.client.eval(_RELEASE, 1, keys.policy_server(mine), self.worker)
                return address, policy, holder
            taken.append(address)
        return None

    def _take(self, address: str, policy: str) -> dict | None:
        body = json.dumps({"worker": self.worker, "policy": policy, "machine": self.machine, "pid": os.getpid()})
        held = self.client.eval(_ACQUIRE, 1, keys.policy_server(address), self.worker, body,
                                int(self.ttl_s * 1000))
        return None if held is None else json.loads(held)

    def renew(self) -> None:
        """Renew the leases (at most every ttl/4); a lease found taken by another worker (Redis
        lost it, and a newer worker took it) stops this one: the two must not share it."""
        if not self.servers or time.monotonic() - self._renewed < self.ttl_s / 4:
            return
        try:
            for address, policy in self.servers.items():
                holder = self._take(address, policy)
                if holder is not None:
                    log.error("policy server %s (%s) is now leased by %s; %s stops so that they do not share it",
                              address, policy, holder.get("worker"), self.worker)
                    os.kill(os.getpid(), signal.SIGTERM)
                    return
        except redis.RedisError as exc:  # Redis restarting: the next heartbeat tries again
            log.warning("could not renew the policy server leases: %s", exc)
            return
        self._renewed = time.monotonic()

    def release(self) -> None:
        for address in self.servers:
            try:
                self.client.eval(_RELEASE, 1, keys.policy_server(address), self.worker)
            except redis.RedisError as exc:  # they lapse after ttl_s
                log.warning("could not release the lease of policy server %s: %s", address, exc)


def renew_on_heartbeats(leases: ServerLeases) -> None:
    """Renew on Celery's event heartbeats (main process, every ~2 s); the worker's entry point
    releases them when Celery returns (worker_shutdown is not sent on a cold shutdown)."""
    from celery.signals import heartbeat_sent, worker_ready

    @worker_ready.connect(weak=False)
    @heartbeat_sent.connect(weak=False)
    def _renew(**_: object) -> None:
        leases.renew()
