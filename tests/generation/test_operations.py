"""Configuration, retry timing and the operator's requeue command."""

from __future__ import annotations

import random
import subprocess
import sys
from io import StringIO
from typing import Any

import grpc
import pytest
from django.core.management import call_command

from apps.content.generator import client_config, describe_failure, retry_delay
from apps.content.services import generation_create
from contentgen_service.client import (
    ContentGenCircuitOpen,
    ContentGenDeadlineExceeded,
    ContentGenError,
    ContentGenInvalidArgument,
    ContentGenOverloaded,
    ContentGenUnauthenticated,
    ContentGenUnavailable,
)
from tests.conftest import ALL_DATABASES, child_env, raw_rows
from tests.generation.conftest import GenerationStack, wait_for_status


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("CONTENTGEN_TIMEOUT_SECONDS", "soon", "CONTENTGEN_TIMEOUT_SECONDS='soon' is not valid: expected a number"),
        ("CONTENTGEN_TIMEOUT_SECONDS", "0.1", "CONTENTGEN_TIMEOUT_SECONDS='0.1' is not valid: expected a number of"),
        (
            "CONTENTGEN_MAX_ATTEMPTS",
            "9",
            "CONTENTGEN_MAX_ATTEMPTS='9' is not valid: expected a whole number from 1 to 5",
        ),
        ("CONTENTGEN_TLS", "maybe", "CONTENTGEN_TLS='maybe' is not valid: expected 1/0"),
        ("CONTENTGEN_JOB_MAX_ATTEMPTS", "0", "CONTENTGEN_JOB_MAX_ATTEMPTS=0 is below the minimum 1"),
        ("API_THROTTLE_CREATE", "lots", "API_THROTTLE_CREATE='lots' is not a rate"),
    ],
)
def test_a_malformed_generation_setting_stops_start_up_naming_the_variable(
    variable: str, value: str, message: str
) -> None:
    env = child_env(REDIS_URL="redis://127.0.0.1:1/0", DJANGO_SECRET_KEY="x" * 50, **{variable: value})
    result = subprocess.run([sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True, timeout=60)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_the_client_is_configured_from_settings(settings: Any) -> None:
    settings.CONTENTGEN = {
        **settings.CONTENTGEN,
        "TARGET": "dns:///contentgen.internal:50051",
        "TOKEN": "s3cret-s3cret-s3cret",
        "TIMEOUT_SECONDS": 12.5,
        "TLS_CA_FILE": "/etc/ssl/private-ca.pem",
    }

    config = client_config()

    assert config.target == "dns:///contentgen.internal:50051" and config.token == "s3cret-s3cret-s3cret"
    assert config.timeout_seconds == 12.5 and config.tls and str(config.tls_ca_file) == "/etc/ssl/private-ca.pem"


def test_retry_delays_grow_exponentially_with_jitter_up_to_the_cap_and_respect_retry_after(settings: Any) -> None:
    settings.CONTENTGEN = {**settings.CONTENTGEN, "RETRY_BACKOFF_SECONDS": 2.0, "RETRY_BACKOFF_MAX_SECONDS": 30.0}
    rng = random.Random(7)

    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 30.0), (9, 30.0)]:
        delays = {retry_delay(attempt=attempt, rng=rng) for _ in range(50)}
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(delays) > 10  # spread out, not in lockstep
    assert retry_delay(attempt=1, retry_after=9.5, rng=rng) == 9.5


@pytest.mark.parametrize(
    ("error", "retryable", "reason"),
    [
        (ContentGenUnavailable("UNAVAILABLE: connection refused"), True, "unreachable right now"),
        (ContentGenCircuitOpen("open", retry_after=4.0), True, "unreachable (recent calls failed"),
        (ContentGenDeadlineExceeded("DEADLINE_EXCEEDED: x"), True, "did not finish within"),
        (ContentGenOverloaded("RESOURCE_EXHAUSTED: busy"), True, "at capacity"),
        (
            ContentGenInvalidArgument(
                "INVALID_ARGUMENT: invalid GenerateRequest: prompt is blank", code=grpc.StatusCode.INVALID_ARGUMENT
            ),
            False,
            "refused the request: invalid GenerateRequest: prompt is blank",
        ),
        (ContentGenUnauthenticated("UNAUTHENTICATED: wrong token"), False, "Authentication with the generation"),
        (ContentGenError("INTERNAL: boom", code=grpc.StatusCode.INTERNAL), False, "service failed: INTERNAL: boom"),
    ],
)
def test_each_service_error_maps_to_retry_or_a_final_message(error: Exception, retryable: bool, reason: str) -> None:
    failure = describe_failure(error)  # type: ignore[arg-type]

    assert failure.retryable is retryable
    assert reason in failure.reason
    assert bool(failure.gave_up) is retryable


@pytest.mark.slow
@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_requeue_sends_jobs_for_generations_nothing_would_run_and_the_worker_completes_them(
    stack: GenerationStack,
) -> None:
    lost = generation_create(user_id=70, prompt="The socket module", max_tokens=10, job_delay=None)
    abandoned = generation_create(user_id=1070, prompt="The socket module", max_tokens=10, job_delay=None)
    fresh = generation_create(user_id=71, prompt="just created", max_tokens=10, job_delay=None)
    raw_rows(
        "shard1",
        "UPDATE content_generation SET updated_at = now() - interval '1 hour' WHERE id = %s RETURNING id",
        [lost.id],
    )
    raw_rows(
        "shard2",
        "UPDATE content_generation SET status = 'running', attempts = 1, claim_token = gen_random_uuid(), "
        "claimed_at = now() - interval '1 hour' WHERE id = %s RETURNING id",
        [abandoned.id],
    )

    dry = StringIO()
    call_command("generations_requeue", "--dry-run", stdout=dry)
    assert "2 stalled generation(s)" in dry.getvalue() and "would queue 2 job(s)" in dry.getvalue()
    assert str(lost.id) in dry.getvalue() and str(abandoned.id) in dry.getvalue()
    assert str(fresh.id) not in dry.getvalue()

    stack.server()
    stack.worker()
    call_command("generations_requeue", stdout=StringIO())

    assert wait_for_status(70, lost.id, "succeeded", "failed")["status"] == "succeeded"
    assert wait_for_status(1070, abandoned.id, "succeeded", "failed")["attempts"] == 2
    assert raw_rows("shard1", "SELECT status FROM content_generation WHERE id = %s", [fresh.id]) == [("queued",)]
