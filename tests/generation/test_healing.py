"""Generations heal themselves: one test per fault, each with real processes.

Every test asserts exactly-once on the rows (one stored result, one
``generation_completed`` event per generation) and what the user sees while
the fault lasts. The sweeper runs inside the Celery worker with a short
interval here (1 s, jobs overdue by 2 s) so that healing takes seconds.
"""

from __future__ import annotations

import json
import signal
from io import StringIO
from typing import Any

import psutil
import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from apps.content.jobs import generation_run_job
from apps.content.services import generation_create
from quantumquill.devstack.redis import RedisServer
from tests.conftest import ALL_DATABASES, raw_rows
from tests.generation.conftest import (
    PACED_MS,
    SWEEPER,
    GenerationStack,
    api_client_for,
    completion_events,
    contentgen_settings,
    generation_row,
    kill_redis,
    parse_sse,
    shard_of,
    wait_for_row,
    wait_for_status,
    wait_until,
)

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]


@pytest.fixture
def gus(make_user: Any) -> Any:
    return make_user(1060, "gus")  # shard2


@pytest.fixture
def hal(make_user: Any) -> Any:
    return make_user(61, "hal")  # shard1


def create_via_api(client: Any, *, max_tokens: int = 10, **headers: str) -> int:
    response = client.post(
        "/api/v1/generations/", {"prompt": "The socket module", "max_tokens": max_tokens}, format="json", **headers
    )
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


def assert_succeeded_once(user_id: int, generation_ids: list[int], *, timeout: float = 60) -> list[dict[str, Any]]:
    rows = [
        wait_for_status(user_id, generation_id, "succeeded", "failed", timeout=timeout)
        for generation_id in generation_ids
    ]
    assert [row["status"] for row in rows] == ["succeeded"] * len(rows), [row["error"] for row in rows]
    assert all(row["output"] and row["error"] == "" for row in rows)
    assert [completion_events(user_id, generation_id) for generation_id in generation_ids] == [1] * len(rows)
    return rows


def generations_of(user_id: int) -> int:
    return raw_rows(shard_of(user_id), "SELECT count(*) FROM content_generation WHERE user_id = %s", [user_id])[0][0]


def dispatch_of(user_id: int, generation_id: int) -> tuple[Any, Any]:
    return raw_rows(
        shard_of(user_id),
        "SELECT dispatch_token, dispatch_due_at FROM content_generation WHERE id = %s",
        [generation_id],
    )[0]


def test_with_broker_and_cache_down_creating_succeeds_and_each_generation_runs_once_when_they_are_back(
    stack: GenerationStack, redis_servers: dict[str, RedisServer], gus: Any
) -> None:
    stack.server()
    page = Client()
    page.force_login(gus)
    api = api_client_for(gus)
    redis_servers["broker"].stop()
    redis_servers["cache"].stop()

    from_page = page.post(
        "/generations/new/", {"prompt": "The socket module", "max_tokens": 10, "temperature": 0.8, "top_p": 0.95}
    )
    from_api = create_via_api(api, HTTP_IDEMPOTENCY_KEY="retry-me-1")
    replay = api.post(
        "/api/v1/generations/",
        {"prompt": "The socket module", "max_tokens": 10},
        format="json",
        HTTP_IDEMPOTENCY_KEY="retry-me-1",
    )
    shown = api.get(f"/api/v1/generations/{from_api}/")

    assert from_page.status_code == 302  # the user lands on the generation's page, not on a 500
    page_id = int(from_page["Location"].rstrip("/").rsplit("/", 1)[-1])
    assert page.get(from_page["Location"]).status_code == 200
    assert replay.status_code == 200 and int(replay.json()["id"]) == from_api  # a retry creates nothing
    assert replay["Idempotent-Replayed"] == "true"
    assert shown.status_code == 200 and shown.json()["status"] == "queued"
    assert generations_of(gus.id) == 2

    redis_servers["broker"].start()
    redis_servers["cache"].start()
    stack.worker(**SWEEPER)

    assert_succeeded_once(gus.id, [page_id, from_api])
    assert generations_of(gus.id) == 2


def test_the_same_idempotency_key_from_another_user_creates_their_own_generation(
    stack: GenerationStack, gus: Any, hal: Any
) -> None:
    first = create_via_api(api_client_for(gus), HTTP_IDEMPOTENCY_KEY="shared-key")
    again = create_via_api(api_client_for(hal), HTTP_IDEMPOTENCY_KEY="shared-key")
    bad = api_client_for(gus).post(
        "/api/v1/generations/", {"prompt": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="k" * 300
    )

    assert first != again and generations_of(gus.id) == 1 and generations_of(hal.id) == 1
    assert bad.status_code == 400 and "Idempotency-Key" in bad.json()


def test_with_the_cache_down_the_api_keeps_answering_and_every_error_is_json(
    stack: GenerationStack, redis_servers: dict[str, RedisServer], gus: Any, caplog: pytest.LogCaptureFixture
) -> None:
    api = api_client_for(gus)
    existing = create_via_api(api)
    redis_servers["cache"].stop()

    listed = api.get("/api/v1/generations/")
    created = create_via_api(api)
    malformed = api.get("/api/v1/generations/not-an-id/")
    too_large = api.generic(
        "POST", "/api/v1/generations/", b'{"prompt": "' + b"x" * 3_000_000 + b'"}', content_type="application/json"
    )

    assert listed.status_code == 200 and {item["id"] for item in listed.json()["results"]} >= {str(existing)}
    assert created != existing
    assert "not applied: the cache is unreachable" in caplog.text  # throttling failed open, and said so
    assert malformed.status_code == 404 and malformed["Content-Type"] == "application/json"
    assert malformed.json()["code"] == "not_found"
    assert too_large.status_code == 413 and "DATA_UPLOAD_MAX_MEMORY_SIZE" in too_large.json()["detail"]

    browser = Client()
    browser.force_login(gus)
    redis_servers["sessions"].stop()
    unavailable = browser.get("/api/v1/generations/")

    assert unavailable.status_code == 503 and unavailable["Content-Type"] == "application/json"
    assert unavailable.json()["code"] == "service_unavailable" and int(unavailable["Retry-After"]) > 0


def test_jobs_waiting_in_the_broker_survive_its_restart_and_complete_once(
    stack: GenerationStack, redis_servers: dict[str, RedisServer], gus: Any
) -> None:
    stack.server()
    api = api_client_for(gus)
    ids = [create_via_api(api) for _ in range(3)]  # no worker yet: the messages wait in the broker

    kill_redis(redis_servers["broker"])
    assert api.get(f"/api/v1/generations/{ids[0]}/").json()["status"] == "queued"  # the user sees it waiting
    redis_servers["broker"].start()
    stack.worker()  # the sweeper is off: only the broker's own copies can run them

    rows = assert_succeeded_once(gus.id, ids)
    assert [row["attempts"] for row in rows] == [1, 1, 1]


def test_a_service_outage_while_jobs_run_ends_with_every_generation_succeeded_once(
    stack: GenerationStack, gus: Any
) -> None:
    server = stack.server(token_interval_ms=PACED_MS)
    stack.worker(**SWEEPER)
    api = api_client_for(gus)
    ids = [create_via_api(api, max_tokens=20) for _ in range(10)]
    wait_until(lambda: server.metric("contentgen_generations_in_flight") >= 1, what="jobs to be generating")

    server.send_signal(signal.SIGKILL)
    server.wait()
    # The outage lasts until the jobs have met the open circuit breaker (fast-fails, not attempts).
    wait_until(
        lambda: any("recent calls failed" in generation_row(gus.id, i)["error"] for i in ids),
        timeout=60,
        what="a job to meet the open circuit",
    )
    waiting = api.get(f"/api/v1/generations/{ids[-1]}/").json()
    assert waiting["status"] in {"queued", "running"}  # the user sees it waiting, with the reason when queued
    stack.server(token_interval_ms=PACED_MS)

    assert_succeeded_once(gus.id, ids, timeout=90)


def test_a_call_refused_by_the_open_circuit_is_not_counted_as_an_attempt(
    stack: GenerationStack, settings: Any, hal: Any
) -> None:
    # Nothing listens on the stack's port: every call fails UNAVAILABLE, and one failure opens the circuit.
    settings.CONTENTGEN = contentgen_settings(stack.target, BREAKER_FAILURES=1, BREAKER_RESET_SECONDS=60.0)
    generation = generation_create(user_id=hal.id, prompt="The socket module", max_tokens=5, job_delay=None)

    first = generation_run_job(user_id=hal.id, generation_id=generation.id)
    second = generation_run_job(user_id=hal.id, generation_id=generation.id)

    row = generation_row(hal.id, generation.id)
    assert first.status == second.status == "queued"
    assert row["attempts"] == 1  # the fast-fail did not count
    assert "recent calls failed" in row["error"]


def test_a_live_stream_that_fails_while_a_job_awaits_the_generation_starts_no_second_job_chain(
    stack: GenerationStack, hal: Any
) -> None:
    awaited = generation_create(user_id=hal.id, prompt="The socket module", max_tokens=5, job_delay=60)
    orphan = generation_create(user_id=hal.id, prompt="The socket module", max_tokens=5, job_delay=None)
    awaited_dispatch = dispatch_of(hal.id, awaited.id)
    api = api_client_for(hal)

    # Nothing listens on the stack's port: both live streams fail with UNAVAILABLE.
    for generation in (awaited, orphan):
        events = parse_sse(b"".join(api.get(f"/api/v1/generations/{generation.id}/stream/").streaming_content))
        assert events[-1][0] == "error" and events[-1][1]["status"] == "queued"

    assert dispatch_of(hal.id, awaited.id) == awaited_dispatch  # the job's chain still owns it
    token, due = dispatch_of(hal.id, orphan.id)
    assert token is not None and due is not None  # no chain owned it: the stream dispatched exactly one


def test_a_worker_killed_mid_job_is_healed_by_the_sweeper_without_an_operator(stack: GenerationStack, gus: Any) -> None:
    server = stack.server(token_interval_ms=PACED_MS)
    doomed = stack.worker(**SWEEPER)
    api = api_client_for(gus)
    generation_id = create_via_api(api, max_tokens=40)  # 1.6 s of tokens, within the 3 s deadline
    wait_until(lambda: server.metric("contentgen_generations_in_flight") == 1, what="the job to be generating")

    for process in [*doomed.pool_processes(), psutil.Process(doomed.process.pid)]:
        process.kill()
    doomed.process.wait()
    assert generation_row(gus.id, generation_id)["status"] == "running"  # stranded under a dead claim
    assert api.get(f"/api/v1/generations/{generation_id}/").json()["status"] == "running"
    stack.worker(**SWEEPER)

    # The claim lease is 13 s here (70 s by default): the sweeper re-sends the job once it has expired.
    row = assert_succeeded_once(gus.id, [generation_id], timeout=60)[0]
    assert row["attempts"] == 2 and row["completion_tokens"] == 40
    assert "generation sweeper: every 1 s" in stack.workers[-1].log()  # it runs inside every worker


def test_a_job_cut_short_by_a_graceful_restart_is_retried_never_stored_as_a_truncated_success(
    stack: GenerationStack, gus: Any
) -> None:
    old = stack.server(token_interval_ms=PACED_MS, grace_seconds=1)
    stack.worker(**SWEEPER)
    api = api_client_for(gus)
    generation_id = create_via_api(api, max_tokens=60)  # 2.4 s of tokens, longer than the grace
    wait_until(lambda: old.metric("contentgen_generations_in_flight") == 1, what="the job to be generating")

    old.send_signal(signal.SIGTERM)
    assert old.wait(timeout=30) == 0
    drained = wait_for_row(
        gus.id,
        generation_id,
        lambda row: row["attempts"] >= 1 and row["status"] != "running",
        what="the drained call to come back",
    )
    assert drained["status"] == "queued" and "Retrying" in drained["error"]
    shown = api.get(f"/api/v1/generations/{generation_id}/").json()
    assert shown["status"] in {"queued", "running"} and shown["output"] == ""  # no truncated text is shown
    stack.server(token_interval_ms=PACED_MS)

    row = assert_succeeded_once(gus.id, [generation_id])[0]
    assert row["completion_tokens"] == 60 and row["finish_reason"] == "length"


def test_the_requeue_command_is_one_sweeper_pass_with_the_sweepers_defaults(stack: GenerationStack, hal: Any) -> None:
    lost = generation_create(user_id=hal.id, prompt="The socket module", max_tokens=5)
    raw_rows(
        shard_of(hal.id),
        "UPDATE content_generation SET dispatch_due_at = now() - interval '31 seconds' WHERE id = %s RETURNING id",
        [lost.id],
    )
    recent = generation_create(user_id=hal.id, prompt="The socket module", max_tokens=5)

    out = StringIO()
    call_command("generations_requeue", "--dry-run", "--format", "json", stdout=out)

    report = json.loads(out.getvalue())
    assert settings.CONTENTGEN["SWEEP_OVERDUE_SECONDS"] == 30  # the default --queued-for
    assert [item["id"] for item in report["stalled"]] == [str(lost.id)] and str(recent.id) not in out.getvalue()
    assert report["dry_run"] is True and report["queued"] == 0


def test_the_openapi_schema_documents_the_idempotency_key_and_the_replay(gus: Any) -> None:
    schema = yaml.safe_load(api_client_for(gus).get("/api/v1/schema/").content)

    create = schema["paths"]["/api/v1/generations/"]["post"]
    assert {"name": "Idempotency-Key", "in": "header"}.items() <= create["parameters"][0].items()
    assert {"200", "201"} <= set(create["responses"])
