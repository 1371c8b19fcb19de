"""Shared fixtures: real PostgreSQL and Redis from the embedded test stack (``make test`` starts it).

Topology: ``default`` (control) on one server, ``shard1``/``shard3`` on a
second, ``shard2`` on a third. Unless a test says otherwise, the shard map is
the standard test map below: user IDs under 1000 on shard1, the rest on shard2.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections

from shardrouter.control import control_connection
from shardrouter.keyspace import KEYSPACE_END, ShardRange
from shardrouter.shardmap import shard_map_cache

STANDARD_MAP = (ShardRange(0, 1000, "shard1"), ShardRange(1000, KEYSPACE_END, "shard2"))
ALL_DATABASES = "__all__"

# make_user, alice (shard1), bob (shard2), carol (shard1) for every folder; the session's trained model; the
# transactional tests' flush that keeps the content types and permissions (tests/support/flush.py).
pytest_plugins = ["tests.support.users", "tests.support.model", "tests.support.flush"]


def write_map(ranges: tuple[ShardRange, ...] | list[ShardRange], reason: str = "test") -> int:
    """Commit ``ranges`` as the newest map version (outside any test transaction) and return the version."""
    with control_connection.cursor() as cur:
        cur.execute("SELECT coalesce(max(version), 0) FROM shardrouter_shardmaprevision")
        version = int(cur.fetchone()[0]) + 1
        cur.execute(
            "INSERT INTO shardrouter_shardmaprevision (version, ranges, reason) VALUES (%s, %s, %s)",
            [version, json.dumps([r.to_json() for r in ranges]), reason],
        )
    shard_map_cache.invalidate()
    return version


def current_ranges() -> list[dict[str, Any]]:
    with control_connection.cursor() as cur:
        cur.execute("SELECT ranges FROM shardrouter_shardmaprevision ORDER BY version DESC LIMIT 1")
        row = cur.fetchone()
    return row[0] if row else []


@pytest.fixture(scope="session")
def _control_connection_closed_before_teardown(django_db_setup: Any) -> Iterator[None]:
    """Close the router's private connection before pytest-django drops the test databases."""
    yield
    control_connection.close()


@pytest.fixture(autouse=True)
def standard_shard_map(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every database test starts (and ends) on the standard map, whatever an earlier test left."""
    if request.node.get_closest_marker("django_db") is None:
        yield
        return
    request.getfixturevalue("_control_connection_closed_before_teardown")
    request.getfixturevalue("kept_post_migrate_tables")
    expected = [r.to_json() for r in STANDARD_MAP]
    with request.getfixturevalue("django_db_blocker").unblock():
        if current_ranges() != expected:
            write_map(STANDARD_MAP, reason="test: standard map")
        shard_map_cache.invalidate()
    yield
    shard_map_cache.invalidate()


def raw_rows(alias: str, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    """Run SQL directly on one database (bypassing the router) and return all rows."""
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params or [])
        return list(cursor.fetchall())


def database_url(alias: str) -> str:
    cfg = connections[alias].settings_dict
    return f"postgres://{cfg['USER']}@{cfg['HOST']}:{cfg['PORT']}/{cfg['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child process (server, worker, second Django process) using the test databases."""
    shards = ",".join(f"{alias}={database_url(alias)}" for alias in connections.settings if alias != "default")
    env = {
        **os.environ,
        "DATABASE_URL": database_url("default"),
        "SHARD_DATABASE_URLS": shards,
        "DJANGO_SETTINGS_MODULE": "quantumquill.settings",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("SHARDROUTER_WORKER_ID", None)
    env.update(extra)
    return env
