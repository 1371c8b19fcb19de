"""Every report on the warehouse equals the same figure computed by scatter-gather on the shards, both engines."""

from __future__ import annotations

import math
import random
from datetime import date, timedelta
from typing import Any

import pytest

from apps.analytics.conf import WarehouseConfig
from apps.analytics.reports import REPORTS, run_report
from apps.analytics.shards import run_report_on_shards
from apps.analytics.sync import Syncer
from apps.content.models import Generation
from tests.analytics.conftest import DAY0, seed_content, seed_users
from tests.conftest import ALL_DATABASES

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]

SINCE = DAY0.date()
UNTIL = SINCE + timedelta(days=25)


def same(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    if len(a) != len(b):
        return False
    for row_a, row_b in zip(a, b, strict=False):
        for x, y in zip(row_a, row_b, strict=False):
            if isinstance(x, float) or isinstance(y, float):
                if not math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-6):
                    return False
            elif x != y:
                return False
    return True


def assert_parity(config: WarehouseConfig, *, since: date = SINCE, until: date = UNTIL) -> None:
    for name in REPORTS:
        on_warehouse = run_report(config, name, since=since, until=until).rows
        on_shards = run_report_on_shards(name, since=since, until=until).rows
        assert on_warehouse, f"{name}: the sample data must give rows"
        assert same(on_warehouse, on_shards), f"{name}:\nwarehouse {on_warehouse[:5]}\nshards    {on_shards[:5]}"


def test_every_report_on_the_warehouse_equals_scatter_gather_on_the_shards(
    warehouse_config: WarehouseConfig, make_user: Any
) -> None:
    rng = random.Random(7)
    users = [5, 17, 400, 999, 1000, 1500, 80_000]
    ids = seed_users(make_user, users, 40, rng=rng)

    syncer = Syncer(warehouse_config)
    first = syncer.catch_up()
    assert all(s.error is None for s in first.sources), first
    assert sum(s.loaded_rows for s in first.sources) > 0
    assert_parity(warehouse_config)

    # Then changes flow: new rows on both shards, updates (a generation finishing), deletes.
    seed_content("shard1", [5], 10, rng=rng)
    seed_content("shard2", [1500], 10, rng=rng)
    finished = Generation.objects.for_user(999).filter(status="queued")
    finished.update(
        status="succeeded", model_name="ngram-large", completion_tokens=77, total_ms=123.5, output="x" * 500
    )
    gone = [gid for gid in ids[::7]]
    for user in users:
        Generation.objects.for_user(user).filter(id__in=gone).delete()
    second = syncer.catch_up()
    assert sum(s.changes for s in second.sources) > 0
    assert all(s.error is None for s in second.sources), second
    assert_parity(warehouse_config)
