"""PgBouncer in transaction mode in front of each embedded PostgreSQL server (docs/connections.md).

One PgBouncer per server, as in production: ``pg0`` (control), ``pg1``
(shard1, shard3) and ``pg2`` (shard2) each get their own, configured from
``deploy/pgbouncer/pgbouncer.ini``. ``pooled_env`` points the application's
URLs at the poolers and keeps the servers' own URLs for the move engine
(``DATABASE_DIRECT_URL``, ``SHARD_DIRECT_DATABASE_URLS``).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg

from deploy.render_pgbouncer import PgBouncerSettings, render_pgbouncer_ini

from .postgres import SUPERUSER, _system_user, reachable_folder
from .stack import DATABASES, SERVER_NAMES, Stack, free_port

# Fixed ports of the dev profile's poolers (`make run PGBOUNCER=1`), next to the servers' 55432-55434.
DEV_PORTS = {"pg0": 56432, "pg1": 56433, "pg2": 56434}


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
    if not found:
        raise RuntimeError(
            "pgbouncer is not installed; run scripts/system-deps.sh (Debian: apt-get install pgbouncer)."
        )
    return found


@dataclass
class PgBouncer:
    """One pgbouncer process (foreground, its own folder) on 127.0.0.1:``port`` in front of one server."""

    name: str
    work_dir: Path
    port: int
    server_port: int
    pool_size: int = 20
    reserve_pool_size: int = 5
    max_db_connections: int = 40
    max_client_conn: int = 2000
    query_wait_timeout: int = 5
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def log_file(self) -> Path:
        return self.work_dir / "pgbouncer.log"

    @property
    def config_file(self) -> Path:
        return self.work_dir / "pgbouncer.ini"

    def settings(self) -> PgBouncerSettings:
        return PgBouncerSettings(
            server_port=self.server_port,
            listen_port=self.port,
            pid_file=str(self.work_dir / "pgbouncer.pid"),
            log_file=str(self.log_file),
            # PgBouncer refuses to run as root; it drops to the embedded servers' user.
            user=_system_user() or "",
            auth_type="trust",
            auth_file=str(self.work_dir / "userlist.txt"),
            admin_users=SUPERUSER,
            pool_size=self.pool_size,
            reserve_pool_size=self.reserve_pool_size,
            max_db_connections=self.max_db_connections,
            max_client_conn=self.max_client_conn,
            query_wait_timeout=self.query_wait_timeout,
        )

    def url(self, dbname: str) -> str:
        return f"postgres://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def __post_init__(self) -> None:
        # Started as root, PgBouncer drops to the PostgreSQL servers' user, which must reach its files too.
        self.work_dir = reachable_folder(self.work_dir)

    def start(self, *, timeout: float = 15) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(render_pgbouncer_ini(self.settings()))
        (self.work_dir / "userlist.txt").write_text(f'"{SUPERUSER}" ""\n')
        owner = _system_user()
        if owner:
            for path in (self.work_dir, self.config_file, self.work_dir / "userlist.txt"):
                shutil.chown(path, user=owner, group=owner)
            self.log_file.touch(exist_ok=True)
            shutil.chown(self.log_file, user=owner, group=owner)
        self._log = (self.work_dir / "stderr.log").open("ab")
        self.process = subprocess.Popen(
            [pgbouncer_binary(), str(self.config_file)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer {self.name} exited with code {self.process.returncode}:\n{self._tail()}")
            try:
                self.admin("SHOW VERSION")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"pgbouncer {self.name} did not listen on {self.port}:\n{self._tail()}"
                    ) from None
                time.sleep(0.05)

    def stop(self, *, timeout: float = 10) -> None:
        """Immediate shutdown (SIGTERM): clients are disconnected, as when the service is restarted."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def admin(self, command: str) -> list[dict[str, Any]]:
        """Run a command on PgBouncer's admin console (``SHOW POOLS``, ``SHOW STATS``, ...)."""
        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            dbname="pgbouncer",
            user=SUPERUSER,
            autocommit=True,
            connect_timeout=2,
            cursor_factory=psycopg.ClientCursor,  # the admin console speaks the simple query protocol only
        ) as conn:
            cursor = conn.execute(command)
            if cursor.description is None:
                return []
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def _tail(self, lines: int = 30) -> str:
        text = ""
        for path in (self.work_dir / "stderr.log", self.log_file):
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) + "\n"
        return text or "(no log)"


def poolers_for(
    stack: Stack, *, work_dir: Path | None = None, fixed_ports: bool = False, **tuning: Any
) -> dict[str, PgBouncer]:
    """One (not yet started) PgBouncer per PostgreSQL server of ``stack``, keyed by server name."""
    base = work_dir or stack.profile.data_dir / "pgbouncer"
    return {
        name: PgBouncer(
            name=f"pgbouncer-{name}",
            work_dir=base / name,
            port=DEV_PORTS[name] if fixed_ports else free_port(),
            server_port=stack.ports[name],
            **tuning,
        )
        for name in SERVER_NAMES
    }


def pooled_env(stack: Stack, poolers: dict[str, PgBouncer]) -> dict[str, str]:
    """The application's env with every database reached through its server's PgBouncer."""

    def pooled(alias: str) -> str:
        server, dbname = DATABASES[alias]
        return poolers[server].url(dbname)

    def direct(alias: str) -> str:
        server, dbname = DATABASES[alias]
        return stack.postgres(server).url(dbname)

    shard_aliases = [alias for alias in DATABASES if alias != "default"]
    return {
        "DATABASE_POOLER": "transaction",
        "DATABASE_URL": pooled("default"),
        "SHARD_DATABASE_URLS": ",".join(f"{alias}={pooled(alias)}" for alias in shard_aliases),
        "DATABASE_DIRECT_URL": direct("default"),
        "SHARD_DIRECT_DATABASE_URLS": ",".join(f"{alias}={direct(alias)}" for alias in shard_aliases),
    }


def start_dev_poolers(stack: Stack) -> dict[str, PgBouncer]:
    """Start the dev profile's poolers on their fixed ports (``make run PGBOUNCER=1``)."""
    poolers = poolers_for(stack, fixed_ports=True)
    started: list[PgBouncer] = []
    try:
        for pooler in poolers.values():
            pooler.start()
            started.append(pooler)
    except Exception:
        for pooler in started:
            pooler.stop()
        raise
    print(
        "PgBouncer (transaction mode) in front of each server: "
        + ", ".join(f"{name} on 127.0.0.1:{pooler.port}" for name, pooler in poolers.items()),
        flush=True,
    )
    return poolers
