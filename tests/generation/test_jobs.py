"""Celery jobs against a real service that goes down, slows down, fills up, refuses, or restarts."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from django.conf import settings

from apps.content.services import generation_create
from apps.content.tasks import generation_run
from contentgen_service.client import ClientConfig, ContentGenClient, GenerationParams
from tests.conftest import ALL_DATABASES
from tests.generation.conftest import (
    PACED_MS,
    TOKEN,
    GenerationStack,
    access_log,
    api_client_for,
    completion_events,
    parse_sse,
    purge_broker,
    wait_for_row,
    wait_for_status,
)
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]


@pytest.fixture
def gus(make_user: Any) -> Any:
    return make_user(1050, "gus")  # shard2


@pytest.fixture
def hal(make_user: Any) -> Any:
    return make_user(51, "hal")  # shard1


def test_a_job_retries_while_the_service_is_down_and_completes_once_when_it_returns(
    stack: GenerationStack, gus: Any
) -> None:
    stack.worker()
    client = api_client_for(gus)
    generation_id = int(
        client.post("/api/v1/generations/", {"prompt": "The socket module"}, format="json").json()["id"]
    )

    waiting = wait_for_row(
        gus.id,
        generation_id,
        lambda row: row["status"] == "queued" and row["attempts"] >= 2,
        what="the job to have failed twice",
    )
    assert "The generation service is unreachable" in waiting["error"] and "Retrying in" in waiting["error"]
    shown = client.get(f"/api/v1/generations/{generation_id}/").json()
    assert shown["status"] in {"queued", "running"} and shown["error"]  # the API says why it waits

    server = stack.server()
    row = wait_for_status(gus.id, generation_id, "succeeded", "failed")

    assert row["status"] == "succeeded" and row["output"] and row["error"] == ""
    assert completion_events(gus.id, generation_id) == 1
    assert [entry["status"] for entry in access_log(server, "Generate")] == ["OK"]


def test_a_generation_that_keeps_missing_its_deadline_fails_with_a_clear_message(
    stack: GenerationStack, hal: Any
) -> None:
    stack.server(token_interval_ms=100)  # 100 tokens take 10 s; the deadline is 3 s
    stack.worker(CONTENTGEN_JOB_MAX_ATTEMPTS="2")
    client = api_client_for(hal)
    generation_id = int(
        client.post("/api/v1/generations/", {"prompt": "The socket module", "max_tokens": 100}, format="json").json()[
            "id"
        ]
    )

    row = wait_for_status(hal.id, generation_id, "succeeded", "failed")

    assert row["status"] == "failed" and row["attempts"] == 2
    assert row["error"] == (
        "The generation service did not finish within 3 s; try fewer max tokens or try again later. (2 attempts)"
    )
    assert client.get(f"/api/v1/generations/{generation_id}/").json()["error"] == row["error"]
    assert completion_events(hal.id, generation_id) == 0


def test_a_live_stream_past_its_deadline_says_it_will_retry_in_the_background(stack: GenerationStack, hal: Any) -> None:
    stack.server(token_interval_ms=100)
    generation = generation_create(user_id=hal.id, prompt="The socket module", max_tokens=100, job_delay=None)

    response = api_client_for(hal).get(f"/api/v1/generations/{generation.id}/stream/")
    events = parse_sse(b"".join(response.streaming_content))

    assert [name for name, _ in events][-1] == "error"
    assert len(events) > 2  # chunks arrived before the deadline cut the call
    error = events[-1][1]
    assert error["status"] == "queued" and error["retry_after"] > 0
    assert error["message"].startswith("The generation service did not finish within 3 s. Retrying in")


def test_a_full_service_answers_resource_exhausted_and_the_job_backs_off_until_a_slot_frees(
    stack: GenerationStack, gus: Any
) -> None:
    server = stack.server(max_concurrency=1, token_interval_ms=PACED_MS)
    blocker = ContentGenClient(ClientConfig(target=stack.target, token=TOKEN)).generate_stream(
        GenerationParams(request_id="blocker", user_id=1, prompt="The socket module", max_tokens=1024), timeout=60
    )
    next(blocker)  # the only slot is taken
    stack.worker()
    client = api_client_for(gus)
    generation_id = int(
        client.post("/api/v1/generations/", {"prompt": "The socket module", "max_tokens": 20}, format="json").json()[
            "id"
        ]
    )

    waiting = wait_for_row(
        gus.id, generation_id, lambda row: row["attempts"] >= 1 and row["error"], what="the job to be refused"
    )
    assert waiting["error"].startswith("The generation service is at capacity")
    stream = client.get(f"/api/v1/generations/{generation_id}/stream/")
    events = parse_sse(b"".join(stream.streaming_content))
    assert events[-1][0] == "error" and events[-1][1]["status"] == "queued"
    assert "at capacity" in events[-1][1]["message"] and events[-1][1]["retry_after"] > 0
    assert server.metric("contentgen_errors_total", method="Generate", code="RESOURCE_EXHAUSTED") >= 1

    blocker.close()
    row = wait_for_status(gus.id, generation_id, "succeeded", "failed")

    assert row["status"] == "succeeded" and completion_events(gus.id, generation_id) == 1


def test_input_the_service_refuses_fails_the_generation_with_the_services_message(
    stack: GenerationStack, hal: Any
) -> None:
    stack.server(max_tokens_limit=16)  # stricter than the API's 1024
    stack.worker()
    client = api_client_for(hal)
    generation_id = int(
        client.post("/api/v1/generations/", {"prompt": "The socket module", "max_tokens": 50}, format="json").json()[
            "id"
        ]
    )

    row = wait_for_status(hal.id, generation_id, "succeeded", "failed")

    assert row["status"] == "failed" and row["attempts"] == 1  # not retried
    assert row["error"] == (
        "The generation service refused the request: invalid GenerateRequest: "
        "max_tokens must be between 1 and 16, got 50"
    )


def test_a_wrong_service_token_fails_the_job_at_once_saying_authentication_failed(
    stack: GenerationStack, gus: Any
) -> None:
    stack.server()
    stack.worker(CONTENTGEN_TOKEN="not-the-service-token-123456")
    generation_id = int(
        api_client_for(gus).post("/api/v1/generations/", {"prompt": "The socket module"}, format="json").json()["id"]
    )

    row = wait_for_status(gus.id, generation_id, "succeeded", "failed")

    assert row["status"] == "failed" and row["attempts"] == 1
    assert row["error"].startswith("Authentication with the generation service failed")
    assert "CONTENTGEN_TOKEN" in row["error"]


def test_a_job_in_flight_completes_across_a_graceful_restart_of_the_service(stack: GenerationStack, gus: Any) -> None:
    old = stack.server(token_interval_ms=PACED_MS, grace_seconds=10)
    stack.worker()
    first = generation_create(user_id=gus.id, prompt="The socket module", max_tokens=40)
    wait_until(lambda: old.metric("contentgen_generations_in_flight") == 1, what="the job's call to be in flight")

    old.send_signal(signal.SIGTERM)
    assert old.wait(timeout=30) == 0
    new = stack.server(token_interval_ms=PACED_MS)
    second = generation_create(user_id=gus.id, prompt="The socket module", max_tokens=10)

    row = wait_for_status(gus.id, first.id, "succeeded", "failed")
    assert row["status"] == "succeeded" and row["completion_tokens"] == 40 and row["attempts"] == 1
    assert wait_for_status(gus.id, second.id, "succeeded", "failed")["status"] == "succeeded"
    # Both servers log to the same file (same port): the old one drained the first call to its end.
    assert old.log_path == new.log_path
    calls = [(entry["request_id"], entry["status"], entry["finish_reason"]) for entry in access_log(new, "Generate")]
    assert calls == [(str(first.request_id), "OK", "length"), (str(second.request_id), "OK", "length")]


def test_duplicate_deliveries_of_a_job_produce_exactly_one_result(stack: GenerationStack, hal: Any) -> None:
    server = stack.server(token_interval_ms=PACED_MS)
    stack.worker(concurrency=2)
    generation = generation_create(user_id=hal.id, prompt="The socket module", max_tokens=20, job_delay=None)

    for _ in range(3):
        generation_run.apply_async(kwargs={"generation_id": generation.id, "user_id": hal.id})

    row = wait_for_status(hal.id, generation.id, "succeeded", "failed")
    assert row["status"] == "succeeded" and row["attempts"] == 1
    assert completion_events(hal.id, generation.id) == 1
    assert len(access_log(server, "Generate")) == 1


def test_a_worker_killed_mid_job_leaves_a_claim_that_is_taken_over_once_it_expires(
    stack: GenerationStack, gus: Any
) -> None:
    server = stack.server(token_interval_ms=100)
    worker = stack.worker(concurrency=1)
    generation = generation_create(user_id=gus.id, prompt="The socket module", max_tokens=20)
    wait_until(lambda: server.metric("contentgen_generations_in_flight") == 1, what="the job's call to be in flight")

    for child in worker.pool_processes():
        child.kill()  # SIGKILL: no cleanup, the claim stays "running"

    row = wait_for_status(gus.id, generation.id, "succeeded", "failed", timeout=90)
    assert row["status"] == "succeeded" and row["attempts"] == 2
    assert completion_events(gus.id, generation.id) == 1
    assert [entry["status"] for entry in access_log(server, "Generate")][-1] == "OK"


def test_a_test_stack_starts_with_no_job_messages_left_by_earlier_tests() -> None:
    """The ``stack`` fixture purges the queue first: a test's job never waits behind an earlier test's."""
    import redis

    for stale in range(3):
        generation_run.apply_async(args=(10**12 + stale, 1))
    queue = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    assert queue.llen("celery") >= 3
    assert purge_broker() >= 3
    assert queue.llen("celery") == 0
