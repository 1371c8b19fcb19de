"""The initial load over rows the warehouse already holds (rows that changed shard): no failure, no duplicate.

The PostgreSQL warehouse loads with a COPY straight into the fact table and, when a row is already there, undoes
that COPY and loads again from the same source snapshot through a staging table; DuckDB anti-joins. Either way
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
from apps.analytics.schema import create_schema
from apps.analytics.sync import Syncer
from shardrouter.control import conninfo_for
from tests.analytics.conftest import seed_users
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
