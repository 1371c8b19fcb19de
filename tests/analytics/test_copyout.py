"""psql reads a source for an initial load into DuckDB: in the load's snapshot, with psql's errors, never orphaned.

The DuckDB load reads each source table with psql (apps/analytics/copyout.py) instead of the Python driver.
What it reads must be exactly what the load's own transaction sees (else the change stream and the load would
overlap or leave a gap), a failure must name its cause, and a load that stops, or is killed, must not leave a
COPY running on the source.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from apps.analytics import capture
from apps.analytics.conf import WarehouseConfig
from apps.analytics.copyout import PsqlCopy, find_psql
from apps.analytics.errors import WarehouseError
from apps.analytics.sync import Syncer
from tests.analytics.conftest import seed_users
from tests.analytics.support import assert_warehouse_equals_owners, owners_rows
from tests.analytics.test_parity import assert_parity
from tests.conftest import ALL_DATABASES

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)]


@pytest.fixture
def psql() -> str:
    path = find_psql("")
    assert path, "the embedded PostgreSQL wheel ships psql, so one is always found in the test environment"
    return path


@pytest.fixture
def load_snapshot() -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """A REPEATABLE READ transaction on shard1 that exported its snapshot, as a load's is."""
    with psycopg.connect(capture.source_conninfo("shard1")) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = str(conn.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
        yield conn, snapshot


def read_all(copy: PsqlCopy) -> bytes:
    parts = []
    while chunk := copy.read(1 << 20):
        parts.append(chunk)
    return b"".join(parts)


PROBE = 987654321


def insert_probe(conn: psycopg.Connection[Any]) -> None:
    conn.execute(
        "INSERT INTO content_generation (id, user_id, request_id, prompt, max_tokens, temperature, top_p, stop, "
        "status, output, error, finish_reason, prompt_tokens, completion_tokens, created_at, updated_at, "
        "attempts, model_name, claimed_by, idempotency_key) VALUES (%s, 7, gen_random_uuid(), 'late', 10, "
        "0.8, 0.95, '[]', 'queued', '', '', '', 1, 0, now(), now(), 0, '', '', '')",
        [PROBE],
    )


def test_psql_reads_the_snapshot_the_load_exported_not_rows_committed_after_it(
    psql: str, load_snapshot: tuple[psycopg.Connection[Any], str]
) -> None:
    _, snapshot = load_snapshot
    with psycopg.connect(capture.source_conninfo("shard1"), autocommit=True) as other:
        before = other.execute("SELECT count(*) FROM content_generation").fetchone()
        insert_probe(other)
        try:
            rows: list[int] = []
            query = "COPY (SELECT count(*) FROM content_generation) TO STDOUT (FORMAT csv)"
            with PsqlCopy(psql, capture.source_conninfo("shard1"), snapshot, query, rows.append) as copy:
                seen = read_all(copy)
            assert before is not None
            assert seen == f"{before[0]}\n".encode(), "the row committed after the export is not in the snapshot"
            assert sum(rows) == 1, "rows are counted by their line ends"
        finally:
            other.execute("DELETE FROM content_generation WHERE id = %s", [PROBE])


def test_a_large_read_arrives_whole(psql: str, load_snapshot: tuple[psycopg.Connection[Any], str]) -> None:
    _, snapshot = load_snapshot
    query = "COPY (SELECT i, repeat('x', 100) FROM generate_series(1, 200000) AS i) TO STDOUT (FORMAT csv)"
    rows: list[int] = []
    with PsqlCopy(psql, capture.source_conninfo("shard1"), snapshot, query, rows.append) as copy:
        lines = read_all(copy).splitlines()
    assert [int(line.split(b",")[0]) for line in lines] == list(range(1, 200001))
    assert sum(rows) == 200000 and len(rows) > 1, "counted block by block"


def test_a_snapshot_that_is_gone_fails_with_psqls_message(psql: str) -> None:
    query = "COPY (SELECT 1) TO STDOUT (FORMAT csv)"
    with PsqlCopy(psql, capture.source_conninfo("shard1"), "00000003-0000001B-1", query, lambda _: None) as copy:
        with pytest.raises(WarehouseError, match=r"with psql failed: .*snapshot"):
            read_all(copy)


def test_an_unreachable_source_is_a_connection_error_so_the_sync_retries_it_later(
    psql: str, load_snapshot: tuple[psycopg.Connection[Any], str]
) -> None:
    _, snapshot = load_snapshot
    with psycopg.connect(capture.source_conninfo("shard1")) as conn:
        port = conn.info.port
    closed = capture.source_conninfo("shard1").replace(f"port={port}", "port=1")
    with PsqlCopy(psql, closed, snapshot, "COPY (SELECT 1) TO STDOUT", lambda _: None) as copy:
        with pytest.raises(psycopg.OperationalError, match="with psql failed"):
            read_all(copy)


# Streams from its first row (a generate_series would be materialized first): 10^9 rows.
ENDLESS = "COPY (SELECT repeat('x', 100) FROM pg_class a, pg_class b, pg_class c, pg_class d) TO STDOUT (FORMAT csv)"
LOADING = (
    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'qq-warehouse-load' "
    "AND datname = current_database() AND state = 'active'"
)


def wait_for_loading(conn: psycopg.Connection[Any], count: int, why: str) -> None:
    deadline = time.monotonic() + 10
    while conn.execute(LOADING).fetchone() != (count,):
        assert time.monotonic() < deadline, why
        time.sleep(0.05)


def test_leaving_early_ends_the_copy_on_the_source(
    psql: str, load_snapshot: tuple[psycopg.Connection[Any], str]
) -> None:
    _, snapshot = load_snapshot
    with PsqlCopy(psql, capture.source_conninfo("shard1"), snapshot, ENDLESS, lambda _: None) as copy:
        assert copy.read(1 << 20), "rows arrive"
        # The caller stops here (DuckDB failed, the sync is stopping).
    with psycopg.connect(capture.source_conninfo("shard1"), autocommit=True) as conn:
        wait_for_loading(conn, 0, "the source still runs the COPY of a load that stopped reading")


LOADER = """
import sys, psycopg
from apps.analytics.copyout import PsqlCopy
conninfo, psql, query = sys.argv[1:]
with psycopg.connect(conninfo) as conn:
    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
    snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
    with PsqlCopy(psql, conninfo, snapshot, query, lambda rows: None) as copy:
        print("reading", flush=True)
        import time
        time.sleep(600)  # holds the pipe without reading it, as a DuckDB busy elsewhere would
"""


def test_a_loader_killed_with_sigkill_takes_its_psql_with_it(psql: str) -> None:
    """The loader dies while psql has a full pipe and a COPY running: both must end, not wait for a reader."""
    conninfo = capture.source_conninfo("shard1")
    loader = subprocess.Popen(
        [sys.executable, "-c", LOADER, conninfo, psql, ENDLESS], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    assert loader.stdout is not None and loader.stdout.readline() == "reading\n"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        wait_for_loading(conn, 1, "the part is being read")
        loader.kill()
        loader.wait()
        assert loader.stdout.read() == ""
        # The backend notices its client gone at its next write: soon, the pipe being full or not.
        wait_for_loading(conn, 0, "the COPY of a killed loader still runs on the source")


def test_the_psql_setting_off_a_path_or_a_mistake() -> None:
    assert find_psql("off") is None
    assert find_psql("OFF") is None
    found = find_psql("")
    assert found is not None and find_psql(found) == found
    with pytest.raises(
        WarehouseError, match=r"WAREHOUSE_PSQL=/nowhere/psql is not an executable psql.*postgresql-client"
    ):
        find_psql("/nowhere/psql")


@pytest.mark.slow
def test_a_duckdb_load_through_the_driver_equals_the_owners(duckdb_warehouse: WarehouseConfig, make_user: Any) -> None:
    """WAREHOUSE_PSQL=off: the load reads through the Python driver, with the same result."""
    config = WarehouseConfig(duckdb_path=duckdb_warehouse.duckdb_path, poll_seconds=0.1, psql="off")
    rng = random.Random(21)
    seed_users(make_user, [9, 700, 1300, 9000], 25, rng=rng)
    outcome = Syncer(config).catch_up()
    assert all(s.error is None for s in outcome.sources), outcome
    generations, events = owners_rows()
    assert sum(s.loaded_rows for s in outcome.sources) == len(generations) + len(events) > 0
    assert_warehouse_equals_owners(config)
    assert_parity(config)
