"""/readyz judges dependencies the way a balancer needs; /metrics counts requests and queries per alias."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connections
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from apps.content.services import generation_create
from quantumquill.devstack.stack import stack_from_state
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
