"""The shards are spared: with every shard server stopped the reports answer from the warehouse, and the sync
waits for a stopped shard without holding up the others, then resumes by itself."""

from __future__ import annotations

import io
import json
import random
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connections

from apps.analytics.conf import WarehouseConfig
from apps.analytics.reports import REPORTS
from apps.analytics.selectors import warehouse_status
from apps.analytics.sync import Syncer
from quantumquill.devstack.stack import stack_from_state
from tests.analytics.conftest import SINCE_TEXT, UNTIL_TEXT, seed_content
from tests.analytics.support import assert_warehouse_equals_owners
from tests.conftest import ALL_DATABASES

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]


def report_json(name: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command(
        "warehouse", "report", name, "--since", SINCE_TEXT, "--until", UNTIL_TEXT, "--format", "json", stdout=out
    )
    return dict(json.loads(out.getvalue()))


def test_with_every_shard_server_stopped_every_report_still_answers_and_sync_resumes_by_itself(
    warehouse_config: WarehouseConfig, make_user: Any, settings: Any
) -> None:
    settings.WAREHOUSE = {"URL": warehouse_config.url, "DUCKDB_PATH": warehouse_config.duckdb_path}
    rng = random.Random(3)
    make_user(10)
    make_user(2000)
    seed_content("shard1", [10], 30, rng=rng)
    seed_content("shard2", [2000], 30, rng=rng)
    syncer = Syncer(warehouse_config, retry_down_after=0.0)
    syncer.catch_up()
    before = {name: report_json(name) for name in REPORTS}
    assert all(result["rows"] for result in before.values())

    stack = stack_from_state()
    shard_servers = [stack.postgres("pg1"), stack.postgres("pg2")]  # shard1 + shard3, shard2
    for server in shard_servers:
        server.stop(mode="fast")
    try:
        assert {name: report_json(name) for name in REPORTS} == before

        outcome = syncer.cycle()  # the shards are down: recorded, not raised
        errors = {s.alias: s.error for s in outcome.sources if s.error}
        assert set(errors) == {"shard1", "shard2", "shard3"}, errors
        states = {s.alias: s for s in warehouse_status(warehouse_config)}
        assert states["shard2"].behind_bytes is None and "unreachable" in (states["shard2"].error or "")
        assert states["default"].error is None
    finally:
        for server in shard_servers:
            server.start()
        for alias in ("shard1", "shard2", "shard3"):
            connections[alias].close()

    seed_content("shard2", [2000], 5, rng=rng)
    outcome = syncer.catch_up()
    assert all(s.error is None for s in outcome.sources), outcome
    assert_warehouse_equals_owners(warehouse_config)
    assert all(s.error is None for s in warehouse_status(warehouse_config))
