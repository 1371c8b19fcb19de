"""A real Prometheus, scraping the real platform every second, sees exactly what happened.

Invariants: requests answered by two worker processes are counted once each
in the summed series; a stopped shard server fires the shard alert for that
shard and no other; a live move's phase, lag and freeze reach Prometheus.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml
from django.db import connections

from apps.security.tokens import api_token_create
from migrations_tooling.models import MoveRange
from quantumquill.devstack.prometheus import PrometheusQueryError
from quantumquill.devstack.stack import REPO_ROOT, stack_from_state
from tests.conftest import ALL_DATABASES, raw_rows
from tests.moves.conftest import drop_all_move_objects
from tests.moves.support import Ledger, latest_move, seed, shardmove, wait_for_phase
from tests.observe import test_alert_rules
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


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((REPO_ROOT / "deploy" / "grafana" / "quantumquill.json").read_text())
    exprs = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            exprs += [target["expr"] for target in inner.get("targets", [])]
    return exprs


def rule_expressions() -> list[str]:
    groups = yaml.safe_load((REPO_ROOT / "deploy" / "prometheus" / "rules" / "quantumquill.rules.yml").read_text())
    return [rule["expr"] for group in groups["groups"] for rule in group["rules"]]


def test_every_dashboard_and_rule_expression_runs_on_the_real_prometheus(platform: Platform) -> None:
    exprs = dashboard_expressions() + rule_expressions()
    assert len(dashboard_expressions()) >= 20
    failures = {}
    for expr in exprs:
        try:
            platform.prometheus.query(expr)
        except PrometheusQueryError as exc:
            failures[expr] = str(exc)
    assert failures == {}
    # The rules Prometheus loaded are the ones in the repository.
    loaded = [r["name"] for g in platform.prometheus.api("rules")["groups"] for r in g["rules"]]
    assert sorted(loaded) == sorted(test_alert_rules.alert_names())
    # And the golden-signal panels have data from the running platform.
    get(f"{platform.web.url}/")
    wait_until(
        lambda: platform.prometheus.query("sum by (status) (rate(qq_http_requests_total[1m]))"),
        timeout=20,
        what="request rate data",
    )
    assert platform.prometheus.query("max by (alias) (qq_database_up)")
    assert platform.prometheus.query("sum by (job) (up)")


def create_generation(platform: Platform, user: Any, request_id: str) -> int:
    key = api_token_create(user_id=user.pk, name="request id test").key
    request = urllib.request.Request(
        f"{platform.web.url}/api/v1/generations/",
        data=json.dumps({"prompt": "follow this request", "max_tokens": 8}).encode(),
        headers={"Authorization": f"Token {key}", "Content-Type": "application/json", "X-Request-ID": request_id},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201
        generation_id = int(json.loads(response.read())["id"])
    wait_until(
        lambda: (
            raw_rows("shard2", "SELECT status FROM content_generation WHERE id = %s", [generation_id])
            == [("succeeded",)]
        ),
        timeout=30,
        what="the generation to succeed",
    )
    return generation_id


def test_one_generations_request_id_is_in_the_web_worker_and_service_logs(platform: Platform, make_user: Any) -> None:
    user = make_user(1200, "followed")
    request_id = f"follow-{uuid.uuid4().hex}"
    create_generation(platform, user, request_id)

    web = wait_until(
        lambda: [
            line
            for line in platform.web_log_lines()
            if line.get("request_id") == request_id and line.get("message") == "request"
        ],
        timeout=10,
        what="the web request's log line",
    )
    assert web[0]["status"] == 201 and web[0]["user_id"] == user.id and web[0]["shards"] == ["shard2"]
    assert web[0]["queries"] > 0 and web[0]["view"].startswith("api")
    task = wait_until(
        lambda: [
            line
            for line in platform.worker_log_lines()
            if line.get("request_id") == request_id and line.get("message") == "task"
        ],
        timeout=30,
        what="the worker's log line for the generation's job",
    )
    assert task[-1]["task"] == "content.generation_run" and task[-1]["state"] == "SUCCESS"
    rpc = wait_until(
        lambda: [line for line in platform.contentgen_log_lines() if line.get("origin_request_id") == request_id],
        timeout=10,
        what="the generation service's log line",
    )
    assert rpc[0]["message"] == "rpc" and rpc[0]["status"] == "OK" and rpc[0]["user_id"] == user.id


def test_one_generation_is_one_trace_across_web_worker_and_service(platform: Platform, make_user: Any) -> None:
    user = make_user(1300, "traced")
    request_id = f"trace-{uuid.uuid4().hex}"
    create_generation(platform, user, request_id)
    services = {"quantumquill-web", "quantumquill-worker", "contentgen"}

    def one_trace_over_every_process() -> str | None:
        by_trace: dict[str, set[str]] = {}
        for span in platform.traces.snapshot():
            by_trace.setdefault(span.trace_id, set()).add(span.service)
        # The web request's own trace: the one whose web span is the API POST (other traces are scrapes).
        for trace_id, seen in by_trace.items():
            if services <= seen:
                return trace_id
        return None

    trace_id = wait_until(one_trace_over_every_process, timeout=30, what="one trace with spans from all three")
    spans = [span for span in platform.traces.snapshot() if span.trace_id == trace_id]
    names = {(span.service, span.name) for span in spans}
    assert any(service == "quantumquill-web" and "POST" in name for service, name in names), names
    assert any(service == "quantumquill-worker" and "generation_run" in name for service, name in names), names
    assert ("contentgen", "/contentgen.v1.ContentGeneration/Generate") in names, names
