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

That default is what `make run` and the tests use. A scale-out topology
(``scaleout_topology(n)``, or ``devstack exec --shard-servers N``) runs N shard
servers pg1..pgN, each holding one shard database (qq_shardI -> alias shardI),
all of shard1 at first, and the control database on pg1 beside shard1, as the
scale-out benchmark measures it (the platform on one server is one machine);
with a CPU cap (``--cpu-cap 0.25``) every PostgreSQL server runs in a cgroup of
its own, capped, see ``cgroups.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import cgroups
from .postgres import PostgresServer, reachable_data_folder
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
MAX_SHARD_SERVERS = 16


@dataclass(frozen=True)
class Topology:
    """Which PostgreSQL servers run and which databases each holds (alias -> (server, database))."""

    databases: dict[str, tuple[str, str]]
    shard_map: str = EMBEDDED_SHARD_MAP

    @property
    def servers(self) -> tuple[str, ...]:
        names = {server for server, _ in self.databases.values()}
        return tuple(sorted(names, key=lambda name: (len(name), name)))

    @property
    def control_server(self) -> str:
        return self.databases["default"][0]

    @property
    def shard_servers(self) -> tuple[str, ...]:
        """The servers holding at least one shard database, the control server too when it holds one."""
        names = {server for alias, (server, _) in self.databases.items() if alias != "default"}
        return tuple(name for name in self.servers if name in names)

    def to_json(self) -> dict[str, object]:
        return {
            "databases": {alias: list(place) for alias, place in self.databases.items()},
            "shard_map": self.shard_map,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Topology:
        databases = data["databases"]
        assert isinstance(databases, dict)
        return cls(
            {alias: (str(place[0]), str(place[1])) for alias, place in databases.items()}, str(data["shard_map"])
        )


DEFAULT_TOPOLOGY = Topology(DATABASES, EMBEDDED_SHARD_MAP)


def scaleout_topology(shard_servers: int) -> Topology:
    """``shard_servers`` servers pg1..pgN, one shard database each, the control database on pg1 beside shard1
    (as in the scale-out benchmark: a one-server platform is one machine, and a split moves users off it, never
    the control database); the map puts every user on shard1, from which live moves spread them over the others."""
    if not 1 <= shard_servers <= MAX_SHARD_SERVERS:
        raise DevstackError(
            f"--shard-servers must be between 1 and {MAX_SHARD_SERVERS} (got {shard_servers}); each one is a "
            "PostgreSQL server of its own."
        )
    databases = {"default": ("pg1", "quantumquill")}
    for index in range(1, shard_servers + 1):
        databases[f"shard{index}"] = (f"pg{index}", f"qq_shard{index}")
    return Topology(databases, "0:MAX=shard1")


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
        Stack(Profile("abandoned", folder, durable=False)).discard()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
FREE_PORT_SPAN = 12000  # how many ports below the ephemeral range free_port() draws from


def free_port() -> int:
    """A loopback port that was free a moment ago, for a server about to listen on it.

    Drawn at random from below the kernel's ephemeral range: a port that ``bind(0)`` hands out comes from that
    range, which every outgoing connection on the machine draws its source port from too, so between the probe
    and the server's own bind another process's connection (to PostgreSQL, Redis...) could take it. Random, so
    that parallel test workers rarely probe the same port at the same moment.
    """
    try:
        low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default
    start = max(1024, low - FREE_PORT_SPAN)
    for _attempt in range(200):
        port = secrets.choice(range(start, low))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:  # that span is crowded: let the kernel pick
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    profile: Profile
    ports: dict[str, int] = field(default_factory=dict)
    topology: Topology = DEFAULT_TOPOLOGY
    cpu_cap: float | None = None  # CPUs per shard server; None: no cgroups at all
    cpu_period_us: int = cgroups.PERIOD_US  # shorter periods spread a small cap more evenly over time

    def cgroup(self, server: str) -> cgroups.CpuCgroup:
        """The cgroup of one server of this stack (its name is unique to the stack's folder)."""
        digest = hashlib.sha1(str(self.profile.data_dir.resolve()).encode()).hexdigest()[:10]
        return cgroups.CpuCgroup(f"quantumquill-{digest}-{server}")

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
            server, dbname = self.topology.databases[alias]
            return self.postgres(server).url(dbname)

        shards = ",".join(f"{alias}={url(alias)}" for alias in self.topology.databases if alias != "default")
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
            "QQ_EMBEDDED_SHARD_MAP": self.topology.shard_map,
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
        if self.cpu_cap is not None:
            cgroups.require_available()  # before anything starts: say so plainly, start nothing
        self.profile.data_dir.mkdir(parents=True, exist_ok=True)
        self.ports = self._choose_ports()
        started: list[str] = []
        # Throwaway servers copy one kept initdb result instead of running initdb each time.
        template_root = None if self.profile.durable else INITDB_TEMPLATES
        # The servers are independent: they start side by side (a test run waits for the slowest, not the sum).
        with ThreadPoolExecutor(max_workers=len(self.topology.servers)) as pool:
            results = [
                pool.submit(self._init_and_start, name, template_root, started) for name in self.topology.servers
            ]
            results += [pool.submit(self._start, name, started) for name in ("redis", "redis-sessions", "redis-broker")]
        try:
            for result in results:
                result.result()
            for server_name, dbname in self.topology.databases.values():
                self.postgres(server_name).ensure_database(dbname)
            if self.cpu_cap is not None:
                self._write_state()  # so `down` finds the cgroups even if placing one fails half-way
                self._place_in_cgroups()
        except DevstackError:
            self._stop(started)
            self._remove_cgroups()
            raise
        return self._write_state()

    def _write_state(self) -> dict[str, str]:
        env = self.env()
        state = {"ports": self.ports, "env": env, "topology": self.topology.to_json(), "cpu_cap": self.cpu_cap}
        self.state_file.write_text(json.dumps(state, indent=2))
        return env

    def _place_in_cgroups(self) -> None:
        """Each PostgreSQL server in a cgroup of its own: every server holding shard databases capped (the
        control server too when it holds one: a one-server platform is one capped machine), a server with only
        the control database measured."""
        for name in self.topology.servers:
            cap = self.cpu_cap if name in self.topology.shard_servers else None
            pid = self.postgres(name).postmaster_pid()
            if pid is None:
                raise DevstackError(f"PostgreSQL server {name} has no postmaster.pid after starting; see its log.")
            cgroups.place_tree(self.cgroup(name).create(cap, period_us=self.cpu_period_us), pid)

    def _remove_cgroups(self) -> None:
        for name in self.topology.servers:
            group = self.cgroup(name)
            if group.exists():
                group.remove()

    def _server(self, name: str) -> PostgresServer | RedisServer:
        if name in self.topology.servers:
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

    def discard(self) -> None:
        """Stop a throwaway stack and delete its files, wherever they were kept (a private run's end).

        In a clone the servers' user cannot enter, the servers' data lived under ``/var/tmp/quantumquill/``
        (``reachable_data_folder``), not in the run's folder: it goes too.
        """
        if self.profile.durable:
            raise DevstackError(f"The {self.profile.name} stack is durable: stop it with `down`, never discard it.")
        try:
            self._stop_from_state()
        finally:
            for folder in {reachable_data_folder(self.profile.data_dir), self.profile.data_dir}:
                shutil.rmtree(folder, ignore_errors=True)

    def ports_to_use(self) -> dict[str, int]:
        """The ports ``up`` will use: the profile's fixed ones (make run), or free ones picked now."""
        return self._choose_ports()

    def _choose_ports(self) -> dict[str, int]:
        if self.profile.fixed_ports:
            ports = dict(self.profile.fixed_ports)
            for name in self.topology.servers:  # shard servers beyond pg2 follow on from pg0's port
                ports.setdefault(name, ports["pg0"] + int(name.removeprefix("pg")))
            return ports
        names = (*self.topology.servers, "redis", "redis-sessions", "redis-broker", "contentgen")
        return {name: free_port() for name in names}

    def _stop_from_state(self) -> None:
        if not self.state_file.exists():
            return
        state = json.loads(self.state_file.read_text())
        self.ports = state["ports"]
        if "topology" in state:  # state files written before topologies were configurable hold the default
            self.topology = Topology.from_json(state["topology"])
        servers: list[PostgresServer | RedisServer] = [self.redis()]
        if "redis-sessions" in self.ports:  # state files written before the session store had its own server
            servers.append(self.redis_sessions())
        if "redis-broker" in self.ports:  # state files written before the broker had its own server
            servers.append(self.redis_broker())
        servers += [self.postgres(name) for name in self.topology.servers]
        # Side by side, as they started; every stop is tried even when one fails.
        with ThreadPoolExecutor(max_workers=len(servers)) as pool:
            stops = [pool.submit(server.stop) for server in servers]
        for stop in stops:
            stop.result()
        if cgroups.unavailable_reason() is None:
            self._remove_cgroups()


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
    topology = Topology.from_json(data["topology"]) if "topology" in data else DEFAULT_TOPOLOGY
    return Stack(
        profile, ports={k: int(v) for k, v in data["ports"].items()}, topology=topology, cpu_cap=data.get("cpu_cap")
    )
