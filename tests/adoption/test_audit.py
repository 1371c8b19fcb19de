"""The sharding-readiness audit on QuantumQuill's own models and code paths.

Invariants: with the audit on, each kind of query sharding would break is
recorded once per call site, and nothing else is; QuantumQuill's own pages and
API record nothing; the audit never changes where a query goes nor fails it;
with the audit off nothing is recorded and no execute wrapper is installed.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from apps.content.models import Generation
from apps.content.services import generation_create
from django.core.management import call_command
from django.db import connections
from django.test import Client, override_settings
from django.urls import reverse

from shardrouter import audit
from shardrouter.context import _current_key, shard_for
from shardrouter.errors import ShardRoutingError
from tests.conftest import ALL_DATABASES

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


@pytest.fixture
def auditing(settings: Any) -> Iterator[audit.FindingRecorder]:
    settings.SHARDROUTER = {
        **settings.SHARDROUTER,
        "AUDIT": True,
        "AUDIT_MAP": "0:1000=shard1,1000:MAX=shard2",
        "AUDIT_FLUSH_SECONDS": 3600,
    }
    audit.recorder.clear()
    yield audit.recorder
    audit.recorder.clear()


def kinds(recorder: audit.FindingRecorder) -> list[tuple[str, str]]:
    return sorted((f.kind, f.model) for f in recorder.findings())


def test_a_query_that_names_its_user_records_nothing(auditing: audit.FindingRecorder) -> None:
    generation_create(user_id=10, prompt="hello", job_delay=None)
    assert Generation.objects.for_user(10).count() == 1
    assert Generation.objects.filter(user_id=1010).using("shard2").count() == 0  # explicit database
    with shard_for(10):
        assert Generation.objects.filter(status="queued").count() == 1  # explicit context
    assert auditing.findings() == []


def test_relying_on_the_request_context_without_naming_the_user_is_a_finding(
    auditing: audit.FindingRecorder,
) -> None:
    token = _current_key.set(10)  # what the middleware does for a signed-in request
    try:
        Generation.objects.filter(status="queued").count()
    finally:
        _current_key.reset(token)
    [finding] = auditing.findings()
    assert (finding.kind, finding.model) == ("no_user", "content.Generation")
    assert finding.call_site.startswith("tests/adoption/test_audit.py:")
    assert "%s" in finding.example and "queued" not in finding.example  # placeholders, never values


def test_a_query_over_users_of_two_ranges_spans_ranges_and_still_raises_as_before(
    auditing: audit.FindingRecorder,
) -> None:
    with pytest.raises(ShardRoutingError):
        list(Generation.objects.filter(user_id__in=[10, 1010]))
    assert kinds(auditing) == [("spans_ranges", "content.Generation")]


def test_users_of_one_range_do_not_span_ranges(auditing: audit.FindingRecorder) -> None:
    with pytest.raises(ShardRoutingError):
        list(Generation.objects.filter(user_id__in=[10, 11]))
    assert kinds(auditing) == []


def test_raw_sql_on_a_sharded_table_is_a_finding_and_runs_unchanged(auditing: audit.FindingRecorder) -> None:
    with connections["shard1"].execute_wrapper(audit.audit_execute_wrapper), connections["shard1"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM content_generation WHERE user_id = %s", [10])
        assert cursor.fetchone() == (0,)
    [finding] = auditing.findings()
    assert (finding.kind, finding.model) == ("raw_sql", "content.Generation")
    assert finding.example.startswith("SELECT count(*) FROM content_generation")


def test_each_call_site_is_counted_once_per_query(auditing: audit.FindingRecorder) -> None:
    for _ in range(3):
        with pytest.raises(ShardRoutingError):
            Generation.objects.filter(user_id__in=[10, 1010]).update(status="failed")
    [finding] = auditing.findings()
    assert finding.count == 3


def test_quantumquills_own_pages_and_api_record_nothing(auditing: audit.FindingRecorder, make_user: Any) -> None:
    for user_id in (10, 1010):
        user = make_user(user_id)
        client = Client()
        client.force_login(user)
        created = client.post(
            reverse("content:create"), {"prompt": "a poem", "max_tokens": 20, "temperature": 0.7, "top_p": 0.9}
        )
        assert created.status_code == 302
        assert client.get(reverse("content:list")).status_code == 200
        assert client.get(created["Location"]).status_code == 200
        api = client.get("/api/v1/generations/")
        assert api.status_code == 200 and len(api.json()["results"]) == 1
        detail = client.get(f"/api/v1/generations/{api.json()['results'][0]['id']}/")
        assert detail.status_code == 200
    assert auditing.findings() == []


def test_an_audit_that_fails_never_fails_the_query(auditing: audit.FindingRecorder, monkeypatch: Any) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("analysis bug")

    monkeypatch.setattr("shardrouter.router.observe_route", broken)
    assert Generation.objects.for_user(10).count() == 0


def test_findings_are_stored_and_reported_worst_first_then_reset(auditing: audit.FindingRecorder) -> None:
    audit.reset_stored_findings()
    with connections["shard1"].execute_wrapper(audit.audit_execute_wrapper), connections["shard1"].cursor() as cursor:
        cursor.execute("SELECT 1 FROM content_generation LIMIT 1")
    with pytest.raises(ShardRoutingError):
        list(Generation.objects.filter(user_id__in=[10, 1010]))
    out = io.StringIO()
    call_command("shardaudit", "report", "--format", "json", stdout=out)
    report = json.loads(out.getvalue())["findings"]
    assert [f["kind"] for f in report] == ["raw_sql", "spans_ranges"]
    assert all(f["fix"] and f["call_site"].startswith("tests/adoption/test_audit.py:") for f in report)
    dry = io.StringIO()
    call_command("shardaudit", "reset", "--dry-run", stdout=dry)
    assert "2 finding(s) would be removed" in dry.getvalue()
    assert audit.count_stored_findings() == 2
    call_command("shardaudit", "reset", stdout=io.StringIO())
    assert audit.count_stored_findings() == 0


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_new_connections_carry_the_wrapper_only_while_the_audit_is_on(settings: Any) -> None:
    settings.SHARDROUTER = {**settings.SHARDROUTER, "AUDIT": True, "AUDIT_FLUSH_SECONDS": 3600}
    connections["shard1"].close()
    with connections["shard1"].cursor() as cursor:
        cursor.execute("SELECT 1")
        assert audit.audit_wrapper_installed(connections["shard1"])
    connections["shard1"].close()
    audit.recorder.clear()


@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_with_the_audit_off_nothing_is_recorded_and_no_wrapper_is_installed() -> None:
    audit.recorder.clear()
    connections["shard1"].close()
    with connections["shard1"].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM content_generation")
        assert not audit.audit_wrapper_installed(connections["shard1"])
    with pytest.raises(ShardRoutingError):
        list(Generation.objects.filter(user_id__in=[10, 1010]))
    assert audit.recorder.findings() == []


@override_settings(SHARDROUTER={"AUDIT": True, "AUDIT_MAP": "0:10=a,oops"})
def test_the_checks_point_at_the_report_and_refuse_a_bad_candidate_map() -> None:
    from shardrouter.checks import check_audit

    ids = {m.id for m in check_audit()}
    assert {"shardrouter.W030", "shardrouter.E031", "shardrouter.E033"} <= ids
