"""A real Prometheus, scraping the real platform every second, sees exactly what happened.

Invariants: requests answered by two worker processes are counted once each
in the summed series; a stopped shard server fires the shard alert for that
shard and no other; a live move's phase, lag and freeze reach Prometheus.
"""

from __future__ import annotations

import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connections

from migrations_tooling.models import MoveRange
from quantumquill.devstack.stack import stack_from_state
from tests.conftest import ALL_DATABASES
from tests.moves.conftest import drop_all_move_objects
from tests.moves.support import Ledger, latest_move, seed, shardmove, wait_for_phase
from tests.observe.conftest import Platform
from tests.support import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)]


def get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        response.read()
        return response.status


def stable_value(platform: Platform, expr: str, expected: float, *, timeout: float = 20) -> None:
    """``expr`` reaches ``expected`` and still equals it three scrapes later (nothing counted twice or late)."""
    prometheus = platform.prometheus
    wait_until(lambda: prometheus.value(expr) == expected, timeout=timeout, what=f"{expr} == {expected}", poll=0.2)
    settle = time.monotonic() + 3
    wait_until(lambda: time.monotonic() > settle, timeout=5, what="three more scrapes")
    assert prometheus.value(expr) == expected


def test_n_requests_over_two_workers_are_exactly_n_in_the_summed_series(platform: Platform) -> None:
    n = 60
    expr = 'sum(qq_http_requests_total{job="quantumquill-web",view="home",status="200"})'
    assert platform.prometheus.value(expr) in (None, 0.0)
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: get(f"{platform.web.url}/"), range(n)))
    assert statuses == [200] * n

    stable_value(platform, expr, float(n))
    answered_by = {line["pid"] for line in platform.web_log_lines() if line.get("view") == "home"}
    assert len(answered_by) == 2, f"the requests should have been spread over both workers: {answered_by}"
    # Per-alias query metrics reach Prometheus too (the home page reads no shard).
    assert platform.prometheus.value('sum(qq_db_queries_total{job="quantumquill-web"})') is not None


def test_stopping_one_shard_server_fires_the_shard_alert_for_that_shard_only(platform: Platform) -> None:
    prometheus = platform.prometheus
    wait_until(lambda: prometheus.value('qq_database_up{alias="shard2"}') == 1, timeout=20, what="shard2 measured up")
    assert prometheus.firing("ShardUnreachable") == []
    shard2 = stack_from_state().postgres("pg2")
    shard2.stop(mode="fast")
    stopped = time.monotonic()
    try:
        firing = wait_until(
            lambda: prometheus.firing("ShardUnreachable"), timeout=30, what="ShardUnreachable to fire", poll=0.25
        )
        fired_after = time.monotonic() - stopped
        assert [labels["alias"] for labels in firing] == ["shard2"], firing
        assert fired_after < 30
        assert prometheus.value('qq_database_up{alias="shard1"}') == 1
        assert prometheus.firing("ControlDatabaseDown") == []
        # The server stays in the balancer: degraded, not unready.
        assert get(f"{platform.web.url}/readyz") == 200
    finally:
        shard2.start()
        connections["shard2"].close()
    wait_until(lambda: prometheus.firing("ShardUnreachable") == [], timeout=30, what="the alert to resolve", poll=0.25)


def test_a_live_moves_phase_lag_and_freeze_series_appear_during_the_move(
    platform: Platform, django_db_blocker: Any
) -> None:
    prometheus = platform.prometheus
    freezes_before = prometheus.value("sum(qq_move_freeze_seconds_count)") or 0.0
    seed(Ledger(), "shard1", [10, 20, 30], per_user=30)
    try:
        shardmove("start", "0", "500", "--to", "shard3")
        move = latest_move()
        wait_for_phase(move.id, "catching_up")
        labels = f'move="{move.id}",source="shard1",target="shard3"'
        wait_until(
            lambda: prometheus.value(f'qq_move_phase{{{labels},phase="catching_up"}}') == 1,
            timeout=20,
            what="the move's phase in Prometheus",
            poll=0.25,
        )
        lag = wait_until(
            lambda: prometheus.query(f"qq_move_replication_lag_bytes{{{labels}}}"),
            timeout=20,
            what="the move's replication lag in Prometheus",
            poll=0.25,
        )
        assert float(lag[0]["value"][1]) >= 0
        # 90 generations and their 90 usage events.
        assert prometheus.value(f"qq_move_rows_copied{{{labels}}}") == 180
        shardmove("switch-reads", str(move.id))
        shardmove("switch-writes", str(move.id))
        assert MoveRange.objects.get(id=move.id).phase == "writes_switched"
        wait_until(
            lambda: (prometheus.value("sum(qq_move_freeze_seconds_count)") or 0.0) == freezes_before + 1,
            timeout=20,
            what="the cut-over's freeze in the histogram",
            poll=0.25,
        )
        assert (prometheus.value("sum(qq_move_freeze_seconds_sum)") or 0.0) > 0
        wait_until(
            lambda: prometheus.value(f'qq_move_phase{{{labels},phase="writes_switched"}}') == 1,
            timeout=20,
            what="the new phase in Prometheus",
            poll=0.25,
        )
    finally:
        with django_db_blocker.unblock():
            drop_all_move_objects()
