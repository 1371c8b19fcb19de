"""Fixtures for live-move tests: every test starts and ends with no replication objects or fences.

Replication objects (publications, slots, subscriptions) and fence rows live
outside Django's tables, so the test database flush does not remove them; a
leftover subscription would keep copying into the next test's data.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.conf import settings

from shardrouter.control import conninfo_for

# Shorter fixed waits of the move engine (a one-window throttle baseline, a 0.25 s map refresh) and cheap password
# hashes: tests/moves/fixtures.py. (The test servers' 200 ms replication-worker retry is the devstack's.)
from tests.moves.fixtures import cheap_passwords, quick_moves  # noqa: F401


def drop_all_move_objects() -> None:
    aliases = list(settings.DATABASES)
    for alias in aliases:
        with psycopg.connect(conninfo_for(alias), autocommit=True) as conn:
            subs = conn.execute(
                "SELECT subname FROM pg_subscription WHERE subname LIKE 'qq_move_%%' "
                "AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchall()
            for (name,) in subs:
                conn.execute(f'ALTER SUBSCRIPTION "{name}" DISABLE')
                conn.execute(f'ALTER SUBSCRIPTION "{name}" SET (slot_name = NONE)')
                conn.execute(f'DROP SUBSCRIPTION "{name}"')
    for alias in aliases:
        with psycopg.connect(conninfo_for(alias), autocommit=True) as conn:
            for (name,) in conn.execute(
                "SELECT pubname FROM pg_publication WHERE pubname LIKE 'qq_move_%%'"
            ).fetchall():
                conn.execute(f'DROP PUBLICATION "{name}"')
            _drop_slots(conn)
            _drop_gates(conn)
            if conn.execute("SELECT to_regclass('qq_fence') IS NOT NULL").fetchone()[0]:  # type: ignore[index]
                conn.execute("DELETE FROM qq_fence; DELETE FROM qq_move_change; DELETE FROM qq_move_marker")


def _drop_gates(conn: psycopg.Connection) -> None:
    """Drop the copy gates of moves a test left mid-copy (a finished, cancelled or completed move has none)."""
    for name, table in conn.execute(
        "SELECT tgname, tgrelid::regclass::text FROM pg_trigger WHERE tgname LIKE 'qq_move_%%_gate'"
    ).fetchall():
        conn.execute(f'DROP TRIGGER IF EXISTS "{name}" ON {table}')


def _drop_slots(conn: psycopg.Connection) -> None:
    """Drop this database's move and table-sync slots, once their WAL senders have gone."""
    deadline = time.monotonic() + 30
    while True:
        slots = conn.execute(
            "SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = current_database() "
            "AND (slot_name LIKE 'qq_move_%%' OR slot_name LIKE 'pg_%%_sync_%%')"
        ).fetchall()
        if not slots:
            return
        for name, pid in slots:
            if pid:
                conn.execute("SELECT pg_terminate_backend(%s)", [pid])
                continue
            try:
                conn.execute("SELECT pg_drop_replication_slot(%s)", [name])
            except (psycopg.errors.ObjectInUse, psycopg.errors.UndefinedObject):
                pass  # taken again, or dropped by its own table-sync worker meanwhile
        if time.monotonic() > deadline:
            raise AssertionError(f"replication slots still in use after 30 s: {slots}")
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def no_move_leftovers(request: pytest.FixtureRequest, django_db_blocker: Any) -> Iterator[None]:
    if request.node.get_closest_marker("django_db") is None:
        yield  # a test without databases neither meets nor leaves replication objects
        return
    with django_db_blocker.unblock():
        drop_all_move_objects()
    yield
    with django_db_blocker.unblock():
        drop_all_move_objects()
