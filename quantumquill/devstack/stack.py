"""The embedded topology: which servers run, which databases they hold, and the env that points at them.

Topology (dev and test alike): the control database on its own server, the
shard databases on two more servers, so a single shard server can be stopped
in a fault test while the others keep serving.

    pg0  quantumquill  -> alias default (control: users, shard map, move state)
    pg1  qq_shard1     -> alias shard1
    pg1  qq_shard3     -> alias shard3 (spare: the target of shard splits)
    pg2  qq_shard2     -> alias shard2
    redis              -> cache
    redis-sessions     -> sessions only: never evicts, keeps its data across a restart
    redis-broker       -> the Celery broker: append-only file, so queued jobs survive a restart
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from .postgres import PostgresServer
from .preflight import DevstackError, PortInUse
from .redis import RedisServer

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_ENV = "QQ_DEVSTACK_STATE"

# alias -> (server name, database name)
DATABASES: dict[str, tuple[str, str]] = {
    "default": ("pg0", "quantumquill"),
    "shard1": ("pg1", "qq_shard1"),
    "shard2": ("pg2", "qq_shard2"),
    "shard3": ("pg1", "qq_shard3"),
}
SERVER_NAMES = ("pg0", "pg1", "pg2")
# Where throwaway (test) servers keep the initdb result they copy (one per PostgreSQL build).
INITDB_TEMPLATES = REPO_ROOT / "var" / "teststack" / "initdb-templates"
# The embedded map: user IDs below 1000 on shard1, the rest (and every new signup) on shard2.
EMBEDDED_SHARD_MAP = "0:1000=shard1,1000:MAX=shard2"


@dataclass(frozen=True)
class Profile:
    name: str
    data_dir: Path
    durable: bool
    fixed_ports: dict[str, int] | None = None
    fresh: bool = False


PROFILES = {
    "dev": Profile(
        "dev",
        REPO_ROOT / "var" / "devstack",
        durable=True,
        fixed_ports={
            "pg0": 55432,
            "pg1": 55433,
            "pg2": 55434,
            "redis": 56379,
            "redis-sessions": 56380,
            "redis-broker": 56381,
            "contentgen": 55051,
        },
    ),
    "test": Profile("test", REPO_ROOT / "var" / "teststack", durable=False, fresh=True),
}


def private_profile(profile: Profile, label: str) -> Profile:
    """A fresh profile in its own sub-folder, so two test runs in one clone (``make test`` while ``make
    typecheck`` runs, or parallel test workers) never stop or wipe each other's servers."""
    reap_abandoned_runs(profile.data_dir)
    return replace(profile, name=f"{profile.name}-{label}", data_dir=profile.data_dir / label)


def reap_abandoned_runs(parent: Path) -> None:
    """Stop and remove the private stacks of runs whose process is gone (killed before it cleaned up)."""
    if not parent.is_dir():
        return
    for folder in parent.glob("run-*"):
        owner = folder.name.removeprefix("run-").split("-")[0]
        if owner.isdigit() and _alive(int(owner)):
            continue
        stack = Stack(Profile("abandoned", folder, durable=False))
        try:
            stack.down()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    profile: Profile
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def state_file(self) -> Path:
        return self.profile.data_dir / "stack.json"

    def postgres(self, name: str) -> PostgresServer:
        return PostgresServer(name, self.profile.data_dir / name, self.ports[name])

    def redis(self) -> RedisServer:
        return RedisServer("redis", self.profile.data_dir / "redis", self.ports["redis"])

    def redis_sessions(self) -> RedisServer:
        """The session store: its own server, so a full cache can never evict a session."""
        return RedisServer(
            "redis-sessions",
            self.profile.data_dir / "redis-sessions",
            self.ports["redis-sessions"],
            policy="noeviction",
            appendonly=True,
        )

    def redis_broker(self) -> RedisServer:
        """The Celery broker: its own server with an append-only file, so a restart keeps the queue."""
        return RedisServer(
            "redis-broker", self.profile.data_dir / "redis-broker", self.ports["redis-broker"], appendonly=True
        )

    def env(self) -> dict[str, str]:
        def url(alias: str) -> str:
            server, dbname = DATABASES[alias]
            return self.postgres(server).url(dbname)

        shards = ",".join(f"{alias}={url(alias)}" for alias in DATABASES if alias != "default")
        redis_server = self.redis()
        sessions_server = self.redis_sessions()
        return {
            "DATABASE_URL": url("default"),
            "SHARD_DATABASE_URLS": shards,
            "REDIS_URL": redis_server.url(0),
            "SESSION_REDIS_URL": sessions_server.url(0),
            "CELERY_BROKER_URL": self.redis_broker().url(0),
            "DJANGO_SECRET_KEY": self._secret_key(),
            "DJANGO_DEBUG": "1",
            "QQ_EMBEDDED_SHARD_MAP": EMBEDDED_SHARD_MAP,
            STATE_ENV: str(self.state_file),
            # The content-generation service: `make run` starts it there; the test profile's port stays
            # unused unless a test starts a server on it.
            "CONTENTGEN_TARGET": f"127.0.0.1:{self.ports['contentgen']}",
            "CONTENTGEN_TOKEN": self._secret("contentgen_token", 32),
        }

    def _secret(self, name: str, nbytes: int) -> str:
        path = self.profile.data_dir / name
        if not path.exists():
            path.write_text(secrets.token_urlsafe(nbytes))
            path.chmod(0o600)
        return path.read_text().strip()

    def _secret_key(self) -> str:
        return self._secret("secret_key", 50)

    def up(self) -> dict[str, str]:
        """Start every server (creating data folders and databases on first use) and write the state file.

        Raises DevstackError (one line: cause and fix) when a server cannot start; the servers this call
        started are stopped again.
        """
        if self.profile.fresh and self.profile.data_dir.exists():
            self._stop_from_state()
            shutil.rmtree(self.profile.data_dir)
        self.profile.data_dir.mkdir(parents=True, exist_ok=True)
        self.ports = self._choose_ports()
        started: list[str] = []
        # Throwaway servers copy one kept initdb result instead of running initdb each time.
        template_root = None if self.profile.durable else INITDB_TEMPLATES
        # The servers are independent: they start side by side (a test run waits for the slowest, not the sum).
        with ThreadPoolExecutor(max_workers=len(SERVER_NAMES)) as pool:
            results = [pool.submit(self._init_and_start, name, template_root, started) for name in SERVER_NAMES]
            results += [pool.submit(self._start, name, started) for name in ("redis", "redis-sessions", "redis-broker")]
        try:
            for result in results:
                result.result()
            for server_name, dbname in DATABASES.values():
                self.postgres(server_name).ensure_database(dbname)
        except DevstackError:
            self._stop(started)
            raise
        env = self.env()
        self.state_file.write_text(json.dumps({"ports": self.ports, "env": env}, indent=2))
        return env

    def _server(self, name: str) -> PostgresServer | RedisServer:
        if name in SERVER_NAMES:
            return self.postgres(name)
        servers = {"redis": self.redis, "redis-sessions": self.redis_sessions, "redis-broker": self.redis_broker}
        return servers[name]()

    def _init_and_start(self, name: str, template_root: Path | None, started: list[str]) -> None:
        self.postgres(name).init(durable=self.profile.durable, template_root=template_root)
        self._start(name, started)

    def _start(self, name: str, started: list[str]) -> None:
        """Start one server; a private stack whose random port was taken meanwhile picks another."""
        for attempt in range(5):
            try:
                if self._server(name).start():
                    started.append(name)
                return
            except PortInUse:
                if self.profile.fixed_ports or attempt == 4:
                    raise  # a person chose these ports (make run): say which one, never move it silently
                self.ports[name] = free_port()

    def _stop(self, names: list[str]) -> None:
        for name in reversed(names):
            self._server(name).stop()

    def down(self) -> None:
        self._stop_from_state()

    def ports_to_use(self) -> dict[str, int]:
        """The ports ``up`` will use: the profile's fixed ones (make run), or free ones picked now."""
        return self._choose_ports()

    def _choose_ports(self) -> dict[str, int]:
        if self.profile.fixed_ports:
            return dict(self.profile.fixed_ports)
        return {name: free_port() for name in (*SERVER_NAMES, "redis", "redis-sessions", "redis-broker", "contentgen")}

    def _stop_from_state(self) -> None:
        if not self.state_file.exists():
            return
        self.ports = json.loads(self.state_file.read_text())["ports"]
        servers: list[PostgresServer | RedisServer] = [self.redis()]
        if "redis-sessions" in self.ports:  # state files written before the session store had its own server
            servers.append(self.redis_sessions())
        if "redis-broker" in self.ports:  # state files written before the broker had its own server
            servers.append(self.redis_broker())
        servers += [self.postgres(name) for name in SERVER_NAMES]
        # Side by side, as they started; every stop is tried even when one fails.
        with ThreadPoolExecutor(max_workers=len(servers)) as pool:
            stops = [pool.submit(server.stop) for server in servers]
        for stop in stops:
            stop.result()


def load_state_env(path: Path | None = None) -> dict[str, str] | None:
    """The env of a running embedded stack, or None when none was started."""
    candidate = path or Path(os.environ.get(STATE_ENV) or PROFILES["dev"].data_dir / "stack.json")
    if not candidate.exists():
        return None
    data: dict[str, dict[str, str]] = json.loads(candidate.read_text())
    return data["env"]


def stack_from_state(path: Path | str | None = None) -> Stack:
    """Rebuild the Stack a state file describes (tests use it to stop and start one server)."""
    state_path = Path(path or os.environ[STATE_ENV])
    data = json.loads(state_path.read_text())
    profile = next((p for p in PROFILES.values() if p.data_dir == state_path.parent), None)
    if profile is None:
        profile = Profile("custom", state_path.parent, durable=True)
    return Stack(profile, ports={k: int(v) for k, v in data["ports"].items()})
