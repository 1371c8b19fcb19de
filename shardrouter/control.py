"""A private connection to the control database for the shard map and ID leases.

The map must be readable whatever state the request's own connections are in
(inside a failed transaction, in another thread, in an async view), so each
process keeps one small autocommit connection of its own, guarded by a lock and
re-opened after a fork or a failure.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from django.db import connections

from .conf import get_settings


def conninfo_for(alias: str) -> str:
    """A libpq connection string for a Django alias (its current settings, test names included)."""
    cfg: dict[str, Any] = connections[alias].settings_dict
    params: dict[str, Any] = {
        "dbname": cfg.get("NAME") or "",
        "user": cfg.get("USER") or None,
        "password": cfg.get("PASSWORD") or None,
        "host": cfg.get("HOST") or None,
        "port": cfg.get("PORT") or None,
    }
    for key, value in (cfg.get("OPTIONS") or {}).items():
        if isinstance(value, (str, int, float)) and key not in {
            "pool",
            "server_side_binding",
            "isolation_level",
            "assume_role",
        }:
            params[key] = value
    return psycopg.conninfo.make_conninfo(**{k: v for k, v in params.items() if v is not None})


class ControlConnection:
    """One lazily opened autocommit psycopg connection per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._conninfo = ""
        self._pid = os.getpid()

    def _reset_after_fork(self) -> None:
        # The parent's socket must not be used or closed by the child.
        self._lock = threading.Lock()
        self._conn = None
        self._pid = os.getpid()

    @contextmanager
    def cursor(self) -> Iterator[psycopg.Cursor[Any]]:
        if self._pid != os.getpid():
            self._reset_after_fork()
        with self._lock:
            conninfo = conninfo_for(get_settings().control_database)
            if self._conn is None or self._conn.closed or conninfo != self._conninfo:
                self._close()
                # No prepared statements: a transaction pooler (PgBouncer) may serve each query from another
                # server connection (docs/connections.md).
                self._conn = psycopg.connect(conninfo, autocommit=True, prepare_threshold=None)
                self._conninfo = conninfo
            try:
                with self._conn.cursor() as cur:
                    yield cur
            except psycopg.OperationalError:
                self._close()
                raise

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None

    def close(self) -> None:
        with self._lock:
            self._close()


control_connection = ControlConnection()
os.register_at_fork(after_in_child=control_connection._reset_after_fork)
