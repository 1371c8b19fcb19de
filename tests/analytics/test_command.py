"""``manage.py warehouse``: reports in three formats, clear errors, status, rebuild, and a schema it does not know."""

from __future__ import annotations

import csv
import io
import json
import random
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.analytics.conf import WarehouseConfig
from apps.analytics.engines import warehouse
from apps.analytics.selectors import warehouse_status
from apps.analytics.sync import Syncer
from apps.content.models import Generation
from apps.content.services import generation_create
from tests.analytics.conftest import SINCE_TEXT, UNTIL_TEXT, seed_content
from tests.conftest import ALL_DATABASES
from tests.moves.support import on_db

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)


@pytest.fixture
def configured(duckdb_warehouse: WarehouseConfig, settings: Any) -> WarehouseConfig:
    settings.WAREHOUSE = {"URL": "", "DUCKDB_PATH": duckdb_warehouse.duckdb_path}
    return duckdb_warehouse


def warehouse_cmd(*args: str) -> str:
    out = io.StringIO()
    call_command("warehouse", *args, stdout=out)
    return out.getvalue()


def test_a_report_comes_as_a_table_csv_or_json(configured: WarehouseConfig, make_user: Any) -> None:
    make_user(12, "carol")
    seed_content("shard1", [12], 30, rng=random.Random(1))
    out = warehouse_cmd("sync")
    assert "shard1: loaded" in out and "rows/s" in out and "ETA" in out
    window = ["--since", SINCE_TEXT, "--until", UNTIL_TEXT]

    table = warehouse_cmd("report", "top-users", *window)
    assert "Top users by tokens" in table and "carol" in table
    rows = list(csv.reader(io.StringIO(warehouse_cmd("report", "generations", *window, "--format", "csv"))))
    assert rows[0] == ["day", "status", "model", "generations", "prompt_tokens", "completion_tokens", "tokens"]
    assert sum(int(r[3]) for r in rows[1:]) == 30
    payload = json.loads(warehouse_cmd("report", "shard-capacity", *window, "--format", "json"))
    assert {r["shard"] for r in payload["rows"]} == {"shard1"}
    assert (
        sum(r["rows"] for r in payload["rows"])
        == on_db("shard1", "SELECT count(*) FROM content_generation")[0][0]
        + on_db("shard1", "SELECT count(*) FROM content_usageevent")[0][0]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "tokens-by-moon-phase"], "Unknown report 'tokens-by-moon-phase'; the reports are: generations"),
        (["report", "latency", "--since", "2026-13-01"], "expected YYYY-MM-DD"),
        (["report", "latency", "--since", "2026-12-02", "--until", "2026-12-01"], "is after --until"),
        (["report", "latency"], "run `manage.py warehouse sync`"),
        (["status"], "run `manage.py warehouse sync`"),
    ],
)
def test_bad_input_or_a_missing_warehouse_gives_an_error_that_says_what_to_do(
    configured: WarehouseConfig, args: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace("`", ".")):
        warehouse_cmd(*args)


def test_status_shows_position_and_lag_per_source_and_rebuild_starts_over(configured: WarehouseConfig) -> None:
    seed_content("shard2", [3000], 10, rng=random.Random(2))
    warehouse_cmd("sync")
    status = json.loads(warehouse_cmd("status", "--format", "json"))
    assert {s["alias"] for s in status} == {"default", "shard1", "shard2", "shard3"}
    assert all(s["loaded"] and s["error"] is None and s["behind_bytes"] is not None for s in status)
    assert "shard2" in warehouse_cmd("status")

    dry = warehouse_cmd("rebuild", "--dry-run")
    assert "Would drop" in dry and "Dry run: nothing changed" in dry
    with warehouse(configured, read_only=True) as wh:
        assert wh.fetchall("SELECT count(*) FROM fact_generation") == [(10,)]
    assert "Dropped" in warehouse_cmd("rebuild")
    assert on_db("shard2", "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'qq_warehouse_%%'") == [(0,)]
    warehouse_cmd("sync")
    with warehouse(configured, read_only=True) as wh:
        assert wh.fetchall("SELECT count(*) FROM fact_generation") == [(10,)]


def test_a_schema_change_the_loader_does_not_know_stops_that_table_with_a_message_and_nothing_else(
    configured: WarehouseConfig,
) -> None:
    syncer = Syncer(configured)
    syncer.catch_up()
    on_db("shard2", "ALTER TABLE content_usageevent ADD COLUMN note text")
    try:
        generation = generation_create(user_id=4000, prompt="after the migration")  # writes a usage event too
        syncer.catch_up()
        with warehouse(configured, read_only=True) as wh:
            assert wh.fetchall("SELECT count(*) FROM fact_generation WHERE id = %s", [generation.id]) == [(1,)]
            assert wh.fetchall("SELECT count(*) FROM fact_usage WHERE user_id = 4000") == [(0,)]
        shard2 = {s.alias: s for s in warehouse_status(configured)}["shard2"]
        stopped = {t.table: t.error for t in shard2.tables}
        assert stopped["content_generation"] is None
        assert "new column(s) note" in (stopped["content_usageevent"] or "")
        assert "stopped" in warehouse_cmd("status")
        # Generations keep flowing.
        Generation.objects.for_user(4000).filter(id=generation.id).update(prompt="still followed")
        syncer.catch_up()
        with warehouse(configured, read_only=True) as wh:
            assert wh.fetchall("SELECT prompt_bytes FROM fact_generation WHERE id = %s", [generation.id]) == [(14,)]
    finally:
        on_db("shard2", "ALTER TABLE content_usageevent DROP COLUMN IF EXISTS note")
