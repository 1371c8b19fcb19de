"""The engine's own connections to the shard databases (plain psycopg, autocommit).

The move engine needs exact control over transactions, lock and statement
timeouts and session settings on each server, and it must never depend on the
state of Django's request connections; so each command opens its own
connections, named ``qq-shardmove`` in ``pg_stat_activity``, and closes them
when it ends. They reach the servers directly, never through a transaction
pooler in front of them (``direct.py``, docs/connections.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from django.conf import settings
from psycopg.sql import SQL, Composed

from .direct import direct_conninfo, verify_direct

APPLICATION_NAME = "qq-shardmove"


def connect(alias: str, *, application_name: str = APPLICATION_NAME) -> psycopg.Connection[Any]:
    """A new autocommit connection to ``alias`` with UTC timestamps (checksums compare their text)."""
    try:
        conn = psycopg.connect(
            direct_conninfo(alias), autocommit=True, application_name=application_name, connect_timeout=10
        )
    except psycopg.OperationalError as exc:
        raise psycopg.OperationalError(f"Cannot connect to database {alias!r}: {exc}") from exc
    try:
        verify_direct(conn, alias)
    except psycopg.Error:
        conn.close()
        raise
    conn.execute("SET TimeZone = 'UTC'")
    conn.execute("SET extra_float_digits = 3")
    return conn


def replication_conninfo(alias: str) -> str:
    """How the *other* server reaches ``alias`` for a subscription.

    Built from the alias's direct connection (host, port, name, user, password),
    unless ``SHARDMOVE['REPLICATION_CONNINFO'][alias]`` says otherwise (for
    servers that see each other under different addresses than the app does).
    """
    overrides = getattr(settings, "SHARDMOVE", {}).get("REPLICATION_CONNINFO", {})
    return str(overrides.get(alias) or direct_conninfo(alias))


class Pool:
    """One lazily opened connection per alias for the duration of a command; reopened if it broke."""

    def __init__(self) -> None:
        self._conns: dict[str, psycopg.Connection[Any]] = {}

    def __getitem__(self, alias: str) -> psycopg.Connection[Any]:
        conn = self._conns.get(alias)
        if conn is None or conn.closed or conn.broken:
            conn = connect(alias)
            self._conns[alias] = conn
        return conn

    def close(self) -> None:
        for conn in self._conns.values():
            try:
                conn.close()
            except psycopg.Error:
                pass
        self._conns.clear()


@contextmanager
def pool() -> Iterator[Pool]:
    connections = Pool()
    try:
        yield connections
    finally:
        connections.close()


@contextmanager
def pool_or(db: Pool | None) -> Iterator[Pool]:
    """``db`` when a caller lends its connections (a follower reporting every second), else a pool of its own."""
    if db is not None:
        yield db
        return
    with pool() as own:
        yield own


def one(
    conn: psycopg.Connection[Any], query: str | SQL | Composed, params: Sequence[Any] | dict[str, Any] | None = None
) -> Any:
    """The first column of the first row (None when there is no row)."""
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    return None if row is None else row[0]
