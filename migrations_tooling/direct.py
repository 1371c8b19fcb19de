"""The move engine's direct connections: its session-bound work never goes through a transaction pooler.

Replication slots, subscriptions, the fence's locks and ``pg_stat_replication``
need one server session for the whole step (and a subscription's connection
speaks the replication protocol, which a pooler does not). When the
application reaches its databases through PgBouncer in transaction mode, the
settings say so and name, per alias, where the server itself listens::

    SHARDMOVE = {
        "REQUIRE_DIRECT_CONNECTIONS": True,   # the app's DATABASES go through a transaction pooler
        "DIRECT_CONNECTIONS": {"shard1": {"HOST": "10.0.0.21", "PORT": "5432"}, ...},
    }

Each entry overrides HOST, PORT and optionally USER, PASSWORD and OPTIONS of
the alias; the database name stays the alias's (PgBouncer serves every database
under its own name). Every engine connection also checks on opening that the
server sees it directly (the server's view of the client port is our own
socket's port); ``ASSUME_DIRECT`` turns that probe off where a NAT rewrites
ports.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from typing import Any

import psycopg
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.db import connections
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from shardrouter.control import conninfo_for

_KEYS = {"HOST": "host", "PORT": "port", "USER": "user", "PASSWORD": "password"}


class PooledConnectionRefused(psycopg.OperationalError):
    """An engine connection that turned out to go through a pooler or proxy."""


def _engine_settings() -> dict[str, Any]:
    return dict(getattr(settings, "SHARDMOVE", {}))


def direct_override(alias: str) -> dict[str, Any] | None:
    entry = _engine_settings().get("DIRECT_CONNECTIONS", {}).get(alias)
    return dict(entry) if entry else None


def direct_conninfo(alias: str) -> str:
    """A libpq connection string that reaches ``alias``'s server itself, never a pooler in front of it."""
    params: dict[str, Any] = conninfo_to_dict(conninfo_for(alias))
    override = direct_override(alias)
    if override:
        for key, libpq_key in _KEYS.items():
            if override.get(key):
                params[libpq_key] = str(override[key])
        for key, value in (override.get("OPTIONS") or {}).items():
            params[key] = value
    return make_conninfo(**params)


def verify_direct(conn: psycopg.Connection[Any], alias: str) -> None:
    """Refuse ``conn`` when the server does not see our own socket (a pooler or proxy sits in between)."""
    if _engine_settings().get("ASSUME_DIRECT"):
        return
    server_sees = conn.execute("SELECT inet_client_port()").fetchone()
    server_port = None if server_sees is None else server_sees[0]
    with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
        ours = sock.getsockname()[1] if sock.family in (socket.AF_INET, socket.AF_INET6) else None
    if server_port == ours:
        return
    raise PooledConnectionRefused(
        f"The move engine's connection to {alias!r} does not reach the PostgreSQL server directly (the server "
        f"sees client port {server_port}, ours is {ours}): a pooler such as PgBouncer is in between, and "
        "replication slots, subscriptions and the fence's locks need a server session of their own. Set "
        f"SHARDMOVE['DIRECT_CONNECTIONS'][{alias!r}] (DATABASE_DIRECT_URL / SHARD_DIRECT_DATABASE_URLS) to the "
        "server's own address; see docs/connections.md."
    )


def _same_endpoint(alias: str, override: dict[str, Any]) -> bool:
    cfg = connections[alias].settings_dict
    return str(override.get("HOST") or cfg.get("HOST")) == str(cfg.get("HOST")) and str(
        override.get("PORT") or cfg.get("PORT")
    ) == str(cfg.get("PORT"))


@register()
def check_direct_connections(app_configs: Iterable[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """With the app behind a transaction pooler, every database needs a direct setting that is not the pooler."""
    if not _engine_settings().get("REQUIRE_DIRECT_CONNECTIONS"):
        return []
    errors: list[CheckMessage] = []
    for alias in settings.DATABASES:
        override = direct_override(alias)
        if override is None:
            errors.append(
                Error(
                    f"Database {alias!r} goes through a transaction pooler and has no direct connection for the "
                    "move engine: its slots, subscriptions and fence locks would go through the pooler.",
                    hint="Set DATABASE_DIRECT_URL / SHARD_DIRECT_DATABASE_URLS (SHARDMOVE['DIRECT_CONNECTIONS']) "
                    "to the PostgreSQL server itself; see docs/connections.md.",
                    id="migrations_tooling.E010",
                )
            )
        elif _same_endpoint(alias, override):
            errors.append(
                Error(
                    f"The direct connection of database {alias!r} names the same host and port as the pooled one.",
                    hint="Point SHARDMOVE['DIRECT_CONNECTIONS'] at the PostgreSQL server, not at PgBouncer.",
                    id="migrations_tooling.E011",
                )
            )
    return errors


@register(Tags.database)
def check_direct_connections_reach_the_server(
    app_configs: Iterable[Any] | None = None, databases: Iterable[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """``manage.py check --database ALIAS``: open the engine's connection and probe it."""
    errors: list[CheckMessage] = []
    for alias in databases or []:
        try:
            with psycopg.connect(direct_conninfo(alias), autocommit=True, connect_timeout=5) as conn:
                verify_direct(conn, alias)
        except PooledConnectionRefused as exc:
            errors.append(Error(str(exc), id="migrations_tooling.E012"))
        except psycopg.OperationalError as exc:
            errors.append(
                Error(
                    f"The move engine cannot connect to database {alias!r} directly: {exc}",
                    hint="Check SHARDMOVE['DIRECT_CONNECTIONS'] (DATABASE_DIRECT_URL / SHARD_DIRECT_DATABASE_URLS).",
                    id="migrations_tooling.E013",
                )
            )
    return errors
