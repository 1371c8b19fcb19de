"""Every test in this folder reaches the databases through PgBouncer in transaction mode.

One real pgbouncer per PostgreSQL server of the test stack (``pg0``, ``pg1``,
``pg2``), as in production. The test databases are created directly (a pooler
holding server connections would block ``DROP DATABASE`` at the end); then,
for this folder only, the test process and every child process it starts
(gunicorn, Celery workers) use the poolers, while the move engine keeps its
direct connections (``SHARDMOVE['DIRECT_CONNECTIONS']``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.db import connections

from quantumquill.devstack.pgbouncer import PgBouncer, poolers_for
from quantumquill.devstack.stack import stack_from_state
from shardrouter.control import control_connection

# The generation stack (contentgen server, Celery workers, gunicorn) of the slice of tests run through the poolers.
from tests.generation.conftest import stack  # noqa: F401

# Shorter fixed waits of the move engine (a one-window throttle baseline, a 0.25 s map refresh): tests/moves/fixtures.py.
# (Not the cheap password hashes: the generation stack's app servers here check passwords with the project's settings.)
from tests.moves.fixtures import quick_moves  # noqa: F401

# Short enough that an exhausted pool answers within seconds.
QUERY_WAIT_TIMEOUT = 3


@pytest.fixture(scope="package", autouse=True)
def pgbouncers(django_db_setup: Any, django_db_blocker: Any) -> Iterator[dict[str, PgBouncer]]:
    """Start the poolers and point every database alias at its server's pooler until the folder is done."""
    test_stack = stack_from_state()
    poolers = poolers_for(
        test_stack, work_dir=test_stack.profile.data_dir / "pgbouncer-tests", query_wait_timeout=QUERY_WAIT_TIMEOUT
    )
    for pooler in poolers.values():
        pooler.start()
    by_server_port = {str(test_stack.ports[name]): pooler for name, pooler in poolers.items()}
    saved_dicts = {alias: dict(settings.DATABASES[alias]) for alias in settings.DATABASES}
    saved_engine = dict(getattr(settings, "SHARDMOVE", {}))
    saved_environ = {key: os.environ.get(key) for key in _CHILD_KEYS}
    direct: dict[str, dict[str, Any]] = {}
    for alias, config in saved_dicts.items():
        pooler = by_server_port[str(config["PORT"])]
        direct[alias] = {"HOST": config["HOST"], "PORT": config["PORT"]}
        _point(alias, {"PORT": str(pooler.port), "DISABLE_SERVER_SIDE_CURSORS": True})
    settings.SHARDMOVE = {**saved_engine, "REQUIRE_DIRECT_CONNECTIONS": True, "DIRECT_CONNECTIONS": direct}
    os.environ.update(_child_environ(direct))
    _reconnect(django_db_blocker)
    try:
        yield poolers
    finally:
        for alias, config in saved_dicts.items():
            _point(
                alias,
                {
                    "PORT": config["PORT"],
                    "DISABLE_SERVER_SIDE_CURSORS": config.get("DISABLE_SERVER_SIDE_CURSORS", False),
                },
            )
        settings.SHARDMOVE = saved_engine
        for key, value in saved_environ.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        # Stopped before the test databases are dropped: a pooler's server connections would block the drop.
        for pooler in poolers.values():
            pooler.stop()
        _reconnect(django_db_blocker)


_CHILD_KEYS = ("DATABASE_POOLER", "DATABASE_DIRECT_URL", "SHARD_DIRECT_DATABASE_URLS")


def _point(alias: str, values: dict[str, Any]) -> None:
    settings.DATABASES[alias].update(values)
    connections[alias].settings_dict.update(values)


def _child_environ(direct: dict[str, dict[str, Any]]) -> dict[str, str]:
    """What a child process needs on top of ``child_env``'s (pooled) URLs: the pooler mode and the direct URLs."""

    def url(alias: str) -> str:
        cfg = settings.DATABASES[alias]
        return f"postgres://{cfg['USER']}@{direct[alias]['HOST']}:{direct[alias]['PORT']}/{cfg['NAME']}"

    shards = ",".join(f"{alias}={url(alias)}" for alias in settings.DATABASES if alias != "default")
    return {
        "DATABASE_POOLER": "transaction",
        "DATABASE_DIRECT_URL": url("default"),
        "SHARD_DIRECT_DATABASE_URLS": shards,
    }


def _reconnect(django_db_blocker: Any) -> None:
    with django_db_blocker.unblock():
        connections.close_all()
        control_connection.close()


def pooler_stats(poolers: dict[str, PgBouncer]) -> dict[str, int]:
    """Transactions each database has run through its pooler so far (PgBouncer's SHOW STATS)."""
    totals: dict[str, int] = {}
    for pooler in poolers.values():
        for row in pooler.admin("SHOW STATS"):
            if row["database"] != "pgbouncer":
                totals[row["database"]] = totals.get(row["database"], 0) + int(row["total_xact_count"])
    return totals
