"""Exactly once under kill -9: whenever the sync dies, after a restart the warehouse equals the shards."""

from __future__ import annotations

import random
from typing import Any

import pytest

from apps.analytics.conf import WarehouseConfig
from apps.analytics.sync import Syncer
from apps.content.models import Generation
from tests.analytics.conftest import seed_content, seed_users
from tests.analytics.support import SyncProcess, assert_warehouse_equals_owners
from tests.analytics.test_parity import assert_parity
from tests.conftest import ALL_DATABASES
from tests.moves.support import Ledger, Load

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]

USERS = [4, 300, 999, 1000, 5000]


def change_everything(rng: random.Random) -> None:
    """Inserts, updates that change bytes and status, and deletes, on both shards."""
    seed_content("shard1", [4], 15, rng=rng)
    seed_content("shard2", [5000], 15, rng=rng)
    Generation.objects.for_user(300).filter(status="queued").update(
        status="succeeded", output="done " * 40, total_ms=9.5
    )
    for user in (999, 1000):
        victims = list(Generation.objects.for_user(user).values_list("id", flat=True)[:5])
        Generation.objects.for_user(user).filter(id__in=victims).delete()


@pytest.mark.parametrize("step", ["load:copied", "load:committed", "apply:written", "apply:committed"])
def test_a_sync_killed_at_a_crash_point_neither_loses_nor_applies_twice(
    duckdb_warehouse: WarehouseConfig, step: str, make_user: Any
) -> None:
    rng = random.Random(step)
    seed_users(make_user, USERS, 60, rng=rng)
    if step.startswith("apply"):
        Syncer(duckdb_warehouse).catch_up()
        change_everything(rng)

    child = SyncProcess(duckdb_warehouse, pause_at=step)
    child.wait_for(f"paused at {step}")
    child.kill()

    change_everything(rng)
    Syncer(duckdb_warehouse).catch_up()
    assert_warehouse_equals_owners(duckdb_warehouse)
    assert_parity(duckdb_warehouse)


def test_a_sync_killed_at_random_moments_while_following_writes_ends_equal_to_the_shards(
    duckdb_warehouse: WarehouseConfig,
) -> None:
    rng = random.Random(42)
    ledger = Ledger()
    with Load(ledger, USERS, threads=2, pause=0.005) as load:
        for _ in range(3):
            child = SyncProcess(duckdb_warehouse)
            child.wait_for("Following changes")  # loaded and caught up: the kill lands while it follows the writes
            load.wait_for_writes(rng.randrange(20, 200))
            child.kill()
        child = SyncProcess(duckdb_warehouse)
        load.wait_for_writes(40)
    assert load.errors == [], load.errors[0]
    child.stop()
    Syncer(duckdb_warehouse).catch_up()
    assert_warehouse_equals_owners(duckdb_warehouse)
