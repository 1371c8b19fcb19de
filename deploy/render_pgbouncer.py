"""Fill in deploy/pgbouncer/pgbouncer.ini for one PostgreSQL server (one PgBouncer per server).

python deploy/render_pgbouncer.py --server 10.0.0.21:5432 --database qq_shard1 --database qq_shard3 \
    > /etc/pgbouncer/pgbouncer.ini

Without ``--database`` every database name is passed through to the server (``* = ...``).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "pgbouncer" / "pgbouncer.ini"
_PLACEHOLDER = re.compile(r"{{\s*([a-z_]+)\s*}}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SAFE = re.compile(r"^[^\s;=\n]*$")


class PgBouncerConfigError(ValueError):
    """A value that would produce a broken PgBouncer configuration."""


@dataclass(frozen=True)
class PgBouncerSettings:
    """Everything that differs between deployments; defaults suit Debian's pgbouncer service."""

    server_host: str = "127.0.0.1"
    server_port: int = 5432
    databases: Sequence[str] = field(default_factory=list)  # empty: pass every name through
    listen_addr: str = "127.0.0.1"
    listen_port: int = 6432
    unix_socket_dir: str = ""
    pid_file: str = "/var/run/postgresql/pgbouncer.pid"
    log_file: str = "/var/log/postgresql/pgbouncer.log"
    user: str = ""  # the user to drop to when started as root
    auth_type: str = "scram-sha-256"
    auth_file: str = "/etc/pgbouncer/userlist.txt"
    admin_users: str = "postgres"
    pool_size: int = 20
    reserve_pool_size: int = 5
    max_db_connections: int = 40
    max_client_conn: int = 2000
    query_wait_timeout: int = 5


def _values(settings: PgBouncerSettings) -> dict[str, str]:
    for name in ("server_host", "listen_addr", "unix_socket_dir", "pid_file", "log_file", "user", "auth_file"):
        value = str(getattr(settings, name))
        if not _SAFE.match(value):
            raise PgBouncerConfigError(f"{name}={value!r} contains whitespace, ';' or '='.")
    if settings.auth_type not in {"trust", "md5", "scram-sha-256", "hba", "cert"}:
        raise PgBouncerConfigError(f"auth_type={settings.auth_type!r} is not one PgBouncer 1.18 supports.")
    for name in ("server_port", "listen_port"):
        if not 0 < int(getattr(settings, name)) < 65536:
            raise PgBouncerConfigError(f"{name}={getattr(settings, name)} is not a TCP port.")
    if settings.reserve_pool_size < 0:
        raise PgBouncerConfigError("reserve_pool_size must not be negative.")
    for name in ("pool_size", "max_db_connections", "max_client_conn", "query_wait_timeout"):
        if int(getattr(settings, name)) < 1:
            raise PgBouncerConfigError(f"{name} must be at least 1.")
    target = f"host={settings.server_host} port={settings.server_port}"
    lines = []
    for dbname in settings.databases:
        if not _NAME.match(dbname):
            raise PgBouncerConfigError(f"Database name {dbname!r} is not a plain identifier.")
        lines.append(f"{dbname} = {target} dbname={dbname}")
    if not lines:
        lines.append(f"* = {target}")
    return {
        "databases": "\n".join(lines),
        "user_directive": f"user = {settings.user}" if settings.user else "",
        "listen_addr": settings.listen_addr,
        "listen_port": str(settings.listen_port),
        "unix_socket_dir": settings.unix_socket_dir,
        "pid_file": settings.pid_file,
        "log_file": settings.log_file,
        "auth_type": settings.auth_type,
        "auth_file": settings.auth_file,
        "admin_users": settings.admin_users,
        "pool_size": str(settings.pool_size),
        "reserve_pool_size": str(settings.reserve_pool_size),
        "max_db_connections": str(settings.max_db_connections),
        "max_client_conn": str(settings.max_client_conn),
        "query_wait_timeout": str(settings.query_wait_timeout),
    }


def render_pgbouncer_ini(settings: PgBouncerSettings, template: Path = TEMPLATE) -> str:
    values = _values(settings)

    def fill(match: re.Match[str]) -> str:
        return values[match.group(1)]

    return _PLACEHOLDER.sub(fill, template.read_text())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="127.0.0.1:5432", help="the PostgreSQL server, HOST:PORT")
    parser.add_argument("--database", action="append", default=[], help="a database to serve (repeatable)")
    parser.add_argument("--listen", default="127.0.0.1:6432", help="where PgBouncer listens, ADDR:PORT")
    parser.add_argument("--pool-size", type=int, default=20, help="server connections per database and user")
    parser.add_argument("--max-db-connections", type=int, default=40, help="server connections per database")
    parser.add_argument("--max-client-conn", type=int, default=2000, help="client connections accepted")
    parser.add_argument("--query-wait-timeout", type=int, default=5, help="seconds a client may wait for a pool")
    args = parser.parse_args(argv)
    host, _, port = args.server.rpartition(":")
    listen_addr, _, listen_port = args.listen.rpartition(":")
    try:
        settings = PgBouncerSettings(
            server_host=host,
            server_port=int(port),
            databases=args.database,
            listen_addr=listen_addr,
            listen_port=int(listen_port),
            pool_size=args.pool_size,
            max_db_connections=args.max_db_connections,
            max_client_conn=args.max_client_conn,
            query_wait_timeout=args.query_wait_timeout,
        )
        sys.stdout.write(render_pgbouncer_ini(settings))
    except (PgBouncerConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
