"""/readyz judges dependencies the way a balancer needs; /metrics counts requests and queries per alias."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import cache
from django.db import connections
from django.test import Client
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from apps.content.models import Generation
from apps.content.services import generation_create
from apps.observability import cluster
from quantumquill.devstack.stack import stack_from_state
from shardrouter.control import control_connection
from shardrouter.errors import ShardWriteUnavailable
from shardrouter.writes import run_sharded_write
from tests.conftest import ALL_DATABASES

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)


def scrape(client: Client) -> dict[str, float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def test_readyz_is_ok_with_every_dependency_listed_and_timed(settings: Any) -> None:
    settings.CONTENTGEN = {**settings.CONTENTGEN, "TARGET": "127.0.0.1:1"}  # nothing listens: degraded, not unready
    response = Client().get("/readyz")
    body = response.json()
    assert response.status_code == 200
    checks = body["checks"]
    assert {"database:default", "database:shard1", "database:shard2", "session_store", "cache", "broker"} <= set(checks)
    assert checks["database:shard1"]["status"] == "ok" and checks["database:shard1"]["latency_ms"] < 1000
    assert [checks[name]["status"] for name in ("database:default", "session_store", "cache", "broker")] == ["ok"] * 4
    assert checks["contentgen"]["status"] == "down" and checks["contentgen"]["latency_ms"] < 1000
    assert body["status"] == "degraded"


def test_one_shard_down_is_degraded_with_200_not_unready() -> None:
    server = stack_from_state().postgres("pg2")
    server.stop(mode="fast")
    try:
        response = Client().get("/readyz")
    finally:
        server.start()
        connections["shard2"].close()
    body = response.json()
    assert response.status_code == 200, body
    assert body["checks"]["database:shard2"]["status"] == "down"
    assert body["checks"]["database:shard1"]["status"] == "ok"
    assert body["status"] == "degraded"


def test_session_store_down_makes_the_server_unready_with_503() -> None:
    server = stack_from_state().redis_sessions()
    server.stop()
    try:
        response = Client().get("/readyz")
    finally:
        server.start()
    assert response.status_code == 503
    assert response["Retry-After"]
    assert response.json()["status"] == "unready"
    assert response.json()["checks"]["session_store"]["status"] == "down"


def test_requests_are_counted_by_view_and_status_and_queries_by_alias(make_user: Any) -> None:
    user = make_user(1500, "metered")
    generation_create(user_id=user.id, prompt="count me", job_delay=None)
    client = Client()
    client.force_login(user)
    before = scrape(client)
    for _ in range(3):
        assert client.get("/generations/").status_code == 200
    assert client.get("/no-such-page").status_code == 404
    after = scrape(client)

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta('qq_http_requests_total{method="GET",status="200",view="content:list"}') == 3
    assert delta('qq_http_requests_total{method="GET",status="404",view="<unmatched>"}') == 1
    assert delta('qq_http_request_duration_seconds_count{view="content:list"}') == 3
    # The list reads the user's shard (shard2 for ID 1500), not shard1.
    assert delta('qq_db_queries_total{alias="shard2"}') >= 3
    assert delta('qq_db_queries_total{alias="shard1"}') == 0
    assert after['qq_database_up{alias="shard2"}'] == 1


def test_control_database_down_makes_the_server_unready_with_503() -> None:
    server = stack_from_state().postgres("pg0")
    server.stop(mode="fast")
    try:
        response = Client().get("/readyz")
    finally:
        server.start()
        connections["default"].close()
        control_connection.close()
    assert response.status_code == 503
    assert response.json()["checks"]["database:default"]["status"] == "down"
    assert response.json()["checks"]["database:shard1"]["status"] == "ok"


FREEZE_SHARD2 = """
CREATE OR REPLACE FUNCTION test_refuse_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'frozen' USING ERRCODE = 'QQ001';
END $$;
CREATE TRIGGER test_refuse_frozen BEFORE INSERT ON content_generation
    FOR EACH ROW EXECUTE FUNCTION test_refuse_frozen();
"""


def test_writes_held_by_a_frozen_range_are_counted_per_alias() -> None:
    counted = ("qq_shard_write_retries_total", {"alias": "shard2", "reason": "frozen"})
    elsewhere = ("qq_shard_write_retries_total", {"alias": "shard1", "reason": "frozen"})
    before = REGISTRY.get_sample_value(*counted) or 0.0
    before_elsewhere = REGISTRY.get_sample_value(*elsewhere) or 0.0  # earlier tests in this process count too
    with connections["shard2"].cursor() as cursor:
        cursor.execute(FREEZE_SHARD2)
    try:
        with pytest.raises(ShardWriteUnavailable):
            run_sharded_write(
                user_id=1500,
                work=lambda: Generation.objects.for_user(1500).create(user_id=1500, prompt="held"),
                max_wait=0.2,
            )
    finally:
        with connections["shard2"].cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS test_refuse_frozen ON content_generation")
            cursor.execute("DROP FUNCTION IF EXISTS test_refuse_frozen()")
    assert (REGISTRY.get_sample_value(*counted) or 0.0) - before >= 2
    assert (REGISTRY.get_sample_value(*elsewhere) or 0.0) == before_elsewhere


def test_the_cluster_is_measured_once_per_interval_whoever_scrapes(settings: Any) -> None:
    settings.QQ_METRICS = {**settings.QQ_METRICS, "CLUSTER_INTERVAL": 5.0}
    cache.delete(cluster.SNAPSHOT_KEY)
    cache.delete(cluster.LOCK_KEY)
    first = cluster.snapshot_current()
    assert first is not None and first.databases["shard1"]["up"]
    # Every scrape within the interval (any worker, any server: the snapshot is in the shared cache) reuses it.
    for _ in range(5):
        again = cluster.snapshot_current(now=first.taken_at + 4.0)
        assert again is not None and again.taken_at == first.taken_at
    # While another process holds the lock, a stale snapshot is shown rather than measured twice.
    cache.add(cluster.LOCK_KEY, "1", timeout=30)
    try:
        held = cluster.snapshot_current(now=first.taken_at + 6.0)
        assert held is not None and held.taken_at == first.taken_at
    finally:
        cache.delete(cluster.LOCK_KEY)
    fresh = cluster.snapshot_current(now=first.taken_at + 6.0)
    assert fresh is not None and fresh.taken_at > first.taken_at


def test_cache_and_broker_down_is_degraded_not_unready() -> None:
    stack = stack_from_state()
    servers = [stack.redis(), stack.redis_broker()]  # the cache's Redis and the broker's, each its own server
    for server in servers:
        server.stop()
    try:
        response = Client().get("/readyz")
    finally:
        for server in servers:
            server.start()
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "degraded"
    assert body["checks"]["cache"]["status"] == "down" and body["checks"]["broker"]["status"] == "down"
    assert body["checks"]["cache"]["latency_ms"] < 1000 and body["checks"]["broker"]["latency_ms"] < 1000
    assert body["checks"]["session_store"]["status"] == "ok"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_503s_are_counted_by_cause_session_store_and_database(make_user: Any) -> None:
    user = make_user(1600, "outages")
    client = Client()
    client.force_login(user)
    sessions_before = sample("qq_session_store_errors_total")
    by_session = sample("qq_unavailable_responses_total", cause="session_store")
    by_database = sample("qq_unavailable_responses_total", cause="database")

    sessions = stack_from_state().redis_sessions()
    sessions.stop()
    try:
        assert client.get("/generations/").status_code == 503
    finally:
        sessions.start()
    assert sample("qq_session_store_errors_total") - sessions_before == 1
    assert sample("qq_unavailable_responses_total", cause="session_store") - by_session == 1

    shard2 = stack_from_state().postgres("pg2")
    shard2.stop(mode="fast")
    try:
        response = client.get("/generations/")
    finally:
        shard2.start()
        connections["shard2"].close()
    assert response.status_code == 503
    assert sample("qq_unavailable_responses_total", cause="database") - by_database == 1
    # The session 503 is given before the URL is resolved; the database one by the view's request.
    assert sample("qq_http_requests_total", view="<unmatched>", method="GET", status="503") >= 1
    assert sample("qq_http_requests_total", view="content:list", method="GET", status="503") >= 1
