"""The initial load over rows the warehouse already holds (rows that changed shard): no failure, no duplicate.

The PostgreSQL warehouse loads with a COPY straight into the fact table and, when a row is already there, undoes
that COPY and loads again from the same source snapshot through a staging table; DuckDB inserts, finds an id held
twice, and loads again with an anti-join. Either way
the warehouse must end equal to the owners' rows, with the daily aggregates of the loaded days recomputed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import psycopg
import pytest

from apps.analytics import aggregates, engines
from apps.analytics.conf import WarehouseConfig
from apps.analytics.engines import warehouse
from apps.analytics.errors import WarehouseUnavailable
from apps.analytics.schema import TABLES, create_schema
from apps.analytics.sync import Syncer
from shardrouter.control import conninfo_for
from tests.analytics.conftest import seed_content, seed_users
from tests.analytics.support import assert_warehouse_equals_owners
from tests.analytics.test_parity import assert_parity
from tests.conftest import ALL_DATABASES

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]


def test_a_load_over_rows_already_present_skips_them_and_recomputes_the_aggregates(
    warehouse_config: WarehouseConfig, make_user: Any
) -> None:
    rng = random.Random(13)
    seed_users(make_user, [8, 600, 1200, 7000], 30, rng=rng)
    first = Syncer(warehouse_config).catch_up()
    assert all(s.error is None for s in first.sources), first

    # shard2 is to be loaded again while half of its rows are still in the warehouse (as after a move from a
    # source loaded earlier), and the aggregates are wiped: only the load can bring them back.
    with warehouse(warehouse_config) as wh, wh.transaction():
        shard2_ids = [int(i) for (i,) in wh.fetchall("SELECT id FROM fact_generation WHERE user_id >= 1000")]
        assert len(shard2_ids) == 60
        gone = shard2_ids[::2]
        wh.execute(f"DELETE FROM fact_generation WHERE id IN ({', '.join(map(str, gone))})")
        wh.execute("DELETE FROM agg_generation_daily")
        wh.execute("DELETE FROM agg_user_daily")
        wh.execute("UPDATE wh_source SET loaded = FALSE WHERE alias = 'shard2'")

    second = Syncer(warehouse_config).catch_up()
    assert all(s.error is None for s in second.sources), second
    assert [s.alias for s in second.sources if s.loaded_rows] == ["shard2"], second
    assert_warehouse_equals_owners(warehouse_config)
    assert_parity(warehouse_config)
    with warehouse(warehouse_config, read_only=True) as wh:
        assert aggregates.meta(wh, aggregates.STALE_KEY) is None, "the recorded days were recomputed and cleared"


def test_a_read_during_the_first_load_into_postgresql_says_busy_instead_of_hanging(
    postgres_warehouse: WarehouseConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first load into an empty PostgreSQL warehouse drops the facts' indexes inside its transaction and so
    holds the table's lock until it commits: a reader waits LOCK_WAIT_SECONDS, then gets the busy error (a
    503 on the page), never a hang; once the load commits the same read answers."""
    monkeypatch.setattr(engines, "LOCK_WAIT_SECONDS", 1.0)
    with warehouse(postgres_warehouse) as wh:
        create_schema(wh)
    with psycopg.connect(str(postgres_warehouse.url)) as loader:  # a transaction, as the first load holds it
        loader.execute("LOCK TABLE fact_generation IN ACCESS EXCLUSIVE MODE")
        with warehouse(postgres_warehouse, read_only=True) as reader:
            with pytest.raises(WarehouseUnavailable, match="busy with its first load; try again shortly"):
                reader.fetchall("SELECT count(*) FROM fact_generation")
    with warehouse(postgres_warehouse, read_only=True) as reader:
        assert reader.fetchall("SELECT count(*) FROM fact_generation") == [(0,)]


def test_a_source_read_that_fails_mid_way_leaves_none_of_its_rows_in_duckdb(
    duckdb_warehouse: WarehouseConfig,
) -> None:
    """DuckDB reads the rows through a pipe: a source that fails after some rows ends the pipe early, which DuckDB
    takes for the end of the rows, so the failure must still reach the load and nothing of it may commit."""
    columns = ("id", "user_id", "kind", "generation_id", "tokens", "created_at", "day", "version", "deleted")
    # Real rows out of a real server, then a division by zero at row 50,000 (a few MiB, more than the pipe holds).
    select = (
        "SELECT i, 1, 'k', NULL::bigint, 100 / (50000 - i), timestamp '2026-11-01', date '2026-11-01', 0, false "
        "FROM generate_series(1, 100000) AS i"
    )

    @contextmanager
    def rows() -> Iterator[IO[bytes]]:
        with psycopg.connect(conninfo_for("shard1")) as conn, conn.cursor() as cur:
            with cur.copy(f"COPY ({select}) TO STDOUT (FORMAT csv)") as copy:
                yield _Chunks(copy)

    with warehouse(duckdb_warehouse) as wh:
        create_schema(wh)
        with pytest.raises(psycopg.errors.DivisionByZero), wh.transaction():
            wh.copy_rows_into("fact_usage", columns, rows, duckdb_warehouse.duckdb_path.parent / ".load-x.csv")
        assert wh.fetchone("SELECT count(*) FROM fact_usage") == (0,)
    assert not list(duckdb_warehouse.duckdb_path.parent.glob(".load-*")), "the pipe is removed"


class _Chunks:
    def __init__(self, copy: Any) -> None:
        self._chunks = iter(copy)

    def read(self, size: int = -1) -> bytes:
        return bytes(next(self._chunks, b""))


def test_duckdb_facts_carry_no_key_yet_every_id_stays_single_through_loads_and_changes(
    duckdb_warehouse: WarehouseConfig, make_user: Any
) -> None:
    """DuckDB's fact tables are created without a primary key (an index the load paid a third of its time for):
    the sync itself keeps one row per id, through the initial load of both shards and the changes after it
    (inserts, updates of loaded rows, deletes), and a cycle ends checkpointed, with no write-ahead log left."""
    rng = random.Random(17)
    seed_users(make_user, [5, 650, 1500, 8000], 20, rng=rng)
    assert all(s.error is None for s in Syncer(duckdb_warehouse).catch_up().sources)
    with warehouse(duckdb_warehouse, read_only=True) as wh:
        keys = wh.fetchall(
            "SELECT table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY' "
            "AND table_name IN ('fact_generation', 'fact_usage')"
        )
    assert keys == []
    assert not duckdb_warehouse.duckdb_path.with_name(duckdb_warehouse.duckdb_path.name + ".wal").exists()

    seed_content("shard2", [1500, 8000], 5, rng=rng)
    with psycopg.connect(conninfo_for("shard1"), autocommit=True) as conn:
        conn.execute("UPDATE content_generation SET status = 'cancelled', prompt = prompt || 'x' WHERE user_id = 5")
        conn.execute("DELETE FROM content_usageevent WHERE user_id = 650")
    assert all(s.error is None for s in Syncer(duckdb_warehouse).catch_up().sources)
    assert_warehouse_equals_owners(duckdb_warehouse)  # fails on an id held twice
    assert_parity(duckdb_warehouse)


def test_a_duckdb_file_from_before_keyed_facts_were_dropped_still_loads_and_follows(
    duckdb_warehouse: WarehouseConfig, make_user: Any
) -> None:
    """A warehouse file whose fact tables were created with a primary key keeps it and keeps working: the load
    into it, a load over rows already present (the key refuses them: loaded again, skipping them) and changes."""
    with warehouse(duckdb_warehouse) as wh:
        for name, columns in TABLES.items():  # as created before: every table with its key
            wh.execute(f"CREATE TABLE {name} ({columns})")
        create_schema(wh)
    rng = random.Random(19)
    seed_users(make_user, [6, 660, 1600, 8100], 20, rng=rng)
    assert all(s.error is None for s in Syncer(duckdb_warehouse).catch_up().sources)
    with warehouse(duckdb_warehouse) as wh, wh.transaction():
        wh.execute("DELETE FROM fact_generation WHERE user_id = 1600")
        wh.execute("UPDATE wh_source SET loaded = FALSE WHERE alias = 'shard2'")
    seed_content("shard1", [6], 3, rng=rng)
    second = Syncer(duckdb_warehouse).catch_up()
    assert all(s.error is None for s in second.sources), second
    assert [s.alias for s in second.sources if s.loaded_rows] == ["shard2"], second
    with warehouse(duckdb_warehouse, read_only=True) as wh:
        keys = wh.fetchall("SELECT table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'")
    assert ("fact_generation",) in keys
    assert_warehouse_equals_owners(duckdb_warehouse)
    assert_parity(duckdb_warehouse)
