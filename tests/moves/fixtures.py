"""Fixtures shared by the folders whose tests run live moves (tests/moves, tests/analytics, tests/pgbouncer).

Each folder's conftest imports the ones it needs (a function-scoped fixture imported into several folders is still
one per test).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connections
from psycopg.conninfo import make_conninfo

from shardrouter.control import conninfo_for
from tests.moves.settings import CHEAP_PASSWORD_HASHERS, QUICK_BASELINE_WINDOWS, QUICK_MAP_REFRESH_SECONDS

# A logical replication worker that exits (a table copy that failed, a subscriber whose server restarted) is started
# again after `wal_retrieve_retry_interval`, 5 s by default: a test that fixes the failure waited up to 5 s for the
# retry. The test servers retry after this instead; what a worker does when it starts again is unchanged.
QUICK_WORKER_RETRY = "200ms"


@pytest.fixture(autouse=True)
def quick_moves(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Shorter fixed waits of the move engine, in this process and in the child processes the test starts.

    * A one-window throttle baseline: `shardmove start` measures the probe for 1 s instead of 5 s before the copy.
      The measurement, the gate and the controller are the same code; only the number of windows the second lowest
      is taken from changes. Only the throttle tests read the baseline: the throttle test that sees the copy
      engage and release under source load keeps the default five windows (its `Operator` runs with the project's
      settings), test_baseline_windows.py checks the setting.
    * A 0.25 s shard-map refresh (1 s by default): `complete` and `cancel` wait 2 x 0.25 + 0.5 = 1 s instead of
      2.5 s for a new map to spread before they delete rows. The rule is the same, and the processes it protects
      (the write load's threads, the children a test starts) refresh at the same shorter interval, so it protects
      them as the default protects a deployment.

    Child processes get the same values from ``tests.moves.settings`` (``Operator``) or from the environment.
    """
    settings.SHARDMOVE = {**settings.SHARDMOVE, "THROTTLE_BASELINE_WINDOWS": QUICK_BASELINE_WINDOWS}
    settings.SHARDROUTER = {**settings.SHARDROUTER, "REFRESH_INTERVAL": QUICK_MAP_REFRESH_SECONDS}
    monkeypatch.setenv("SHARDMAP_REFRESH_INTERVAL", str(QUICK_MAP_REFRESH_SECONDS))


@pytest.fixture(autouse=True)
def cheap_passwords(settings: Any) -> None:
    """Hash test passwords with MD5: hashing one with PBKDF2 takes 0.3 s of CPU (a warehouse test made 20 users),
    and no test here is about the hash. A child process that checks a password (an app server a browser logs in
    to) must run with ``tests.moves.settings``, which lists the same hashers."""
    settings.PASSWORD_HASHERS = CHEAP_PASSWORD_HASHERS


def _servers() -> dict[tuple[str, str], str]:
    """One connection string per PostgreSQL server behind the database aliases (shard1 and shard3 share one).

    To the server's `postgres` database: the test databases may not exist yet (a session fixture can come first).
    """
    found: dict[tuple[str, str], str] = {}
    for alias in django_settings.DATABASES:
        cfg = connections[alias].settings_dict
        found.setdefault(
            (str(cfg.get("HOST")), str(cfg.get("PORT"))), make_conninfo(conninfo_for(alias), dbname="postgres")
        )
    return found


def _set_worker_retry(value: str | None) -> None:
    for conninfo in _servers().values():
        with psycopg.connect(conninfo, autocommit=True) as conn:
            if value is None:
                conn.execute("ALTER SYSTEM RESET wal_retrieve_retry_interval")
            else:
                conn.execute(f"ALTER SYSTEM SET wal_retrieve_retry_interval = '{value}'")
            conn.execute("SELECT pg_reload_conf()")


@pytest.fixture(scope="session", autouse=True)
def quick_replication_retries(django_db_blocker: Any) -> Iterator[None]:
    """The test servers restart an exited logical replication worker after 200 ms, not 5 s, for this run.

    Set with ALTER SYSTEM on the servers of this run's stack (a test-only setting of throwaway servers; the stack's
    own configuration is quantumquill/devstack's), and reset when the run ends.
    """
    with django_db_blocker.unblock():
        _set_worker_retry(QUICK_WORKER_RETRY)
    yield
    with django_db_blocker.unblock():
        _set_worker_retry(None)
