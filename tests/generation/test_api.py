"""The JSON API: token auth, create -> job -> result on the owner's shard, validation, isolation, schema."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

from apps.content.services import generation_create
from tests.conftest import ALL_DATABASES, raw_rows
from tests.generation.conftest import (
    GenerationStack,
    api_client_for,
    completion_events,
    parse_sse,
    wait_for_status,
)

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)


@pytest.fixture
def dana(make_user: Any) -> Any:
    return make_user(1030, "dana", password="dana's long passphrase")  # shard2


@pytest.fixture
def eli(make_user: Any) -> Any:
    return make_user(31, "eli")  # shard1


@pytest.mark.slow
def test_a_token_from_username_and_password_creates_a_generation_that_a_job_completes_on_my_shard(
    stack: GenerationStack, dana: Any
) -> None:
    stack.server()
    stack.worker()
    client = APIClient()
    refused = client.post("/api/v1/auth/token/", {"username": "dana", "password": "wrong"}, format="json")
    assert refused.status_code == 401
    token = client.post(
        "/api/v1/auth/token/", {"username": "dana", "password": "dana's long passphrase"}, format="json"
    ).json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")

    created = client.post(
        "/api/v1/generations/", {"prompt": "The socket module", "max_tokens": 24, "seed": 3}, format="json"
    )

    assert created.status_code == 201, created.content
    body = created.json()
    assert isinstance(body["id"], str) and body["status"] == "queued"
    assert body["url"] == f"http://testserver/api/v1/generations/{body['id']}/"
    assert body["stream_url"] == f"http://testserver/api/v1/generations/{body['id']}/stream/"
    generation_id = int(body["id"])
    row = wait_for_status(dana.id, generation_id, "succeeded", "failed")
    assert row["status"] == "succeeded", row
    assert raw_rows("shard1", "SELECT count(*) FROM content_generation WHERE user_id = %s", [dana.id]) == [(0,)]

    fetched = client.get(f"/api/v1/generations/{body['id']}/").json()
    assert fetched["status"] == "succeeded"
    assert fetched["output"] == row["output"] and fetched["output"].strip()
    assert fetched["finish_reason"] in {"length", "stop"}
    assert fetched["completion_tokens"] == row["completion_tokens"] > 0
    assert fetched["completed_at"] is not None
    assert completion_events(dana.id, generation_id) == 1
    listed = client.get("/api/v1/generations/").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == body["id"]


def test_unauthenticated_calls_are_refused_with_401() -> None:
    response = APIClient().get("/api/v1/generations/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({"prompt": "   "}, "prompt", "may not be blank"),
        ({}, "prompt", "required"),
        ({"prompt": "x", "max_tokens": 1025}, "max_tokens", "less than or equal to 1024"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"prompt": "x", "temperature": 2.5}, "temperature", "less than or equal to 2"),
        ({"prompt": "x", "top_p": 0}, "top_p", "greater than or equal to 0.01"),
        ({"prompt": "x", "seed": -1}, "seed", "greater than or equal to 0"),
        ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop", "no more than 4"),
        ({"prompt": "x", "stop": ["y" * 33]}, "stop", "no more than 32 characters"),
        ({"prompt": "x", "stop": [""]}, "stop", "may not be blank"),
    ],
)
def test_bad_input_gets_400_with_a_message_per_field_and_nothing_is_stored(
    eli: Any, payload: dict[str, Any], field: str, message: str
) -> None:
    response = api_client_for(eli).post("/api/v1/generations/", payload, format="json")

    assert response.status_code == 400
    assert message in str(response.json()[field])
    assert raw_rows("shard1", "SELECT count(*) FROM content_generation") == [(0,)]


def test_a_user_never_sees_streams_or_deletes_someone_elses_generation(dana: Any, eli: Any) -> None:
    theirs = generation_create(user_id=dana.id, prompt="dana's private prompt", job_delay=None)
    mine = generation_create(user_id=eli.id, prompt="eli's prompt", job_delay=None)
    client = api_client_for(eli)

    assert client.get(f"/api/v1/generations/{theirs.id}/").status_code == 404
    assert client.get(f"/api/v1/generations/{theirs.id}/stream/").status_code == 404
    assert client.delete(f"/api/v1/generations/{theirs.id}/").status_code == 404
    assert client.get("/api/v1/generations/99999999999999999999/").status_code == 404  # beyond 64 bits
    assert [item["id"] for item in client.get("/api/v1/generations/").json()["results"]] == [str(mine.id)]
    # The page's stream too, for a logged-in session.
    client.force_authenticate(user=None)
    client.force_login(eli)
    assert client.get(f"/generations/{theirs.id}/stream/").status_code == 404
    assert raw_rows("shard2", "SELECT count(*) FROM content_generation WHERE id = %s", [theirs.id]) == [(1,)]

    assert client.delete(f"/api/v1/generations/{mine.id}/").status_code == 204
    assert raw_rows("shard1", "SELECT count(*) FROM content_generation WHERE id = %s", [mine.id]) == [(0,)]


def test_the_list_is_mine_only_newest_first_in_pages_of_twenty(eli: Any, dana: Any) -> None:
    for n in range(23):
        generation_create(user_id=eli.id, prompt=f"prompt {n:02d}", job_delay=None)
    generation_create(user_id=dana.id, prompt="not eli's", job_delay=None)
    client = api_client_for(eli)

    first = client.get("/api/v1/generations/").json()
    second = client.get(first["next"]).json()

    assert first["count"] == 23 and first["previous"] is None
    assert [item["prompt"] for item in first["results"]][:2] == ["prompt 22", "prompt 21"]
    assert len(first["results"]) == 20
    assert [item["prompt"] for item in second["results"]] == ["prompt 02", "prompt 01", "prompt 00"]
    assert second["next"] is None


def test_a_finished_generation_streams_as_one_chunk_and_done(eli: Any) -> None:
    generation = generation_create(user_id=eli.id, prompt="already done", job_delay=None)
    raw_rows(
        "shard1",
        "UPDATE content_generation SET status = 'succeeded', output = 'The whole text.', finish_reason = 'stop', "
        "prompt_tokens = 2, completion_tokens = 4, total_ms = 12.5 WHERE id = %s RETURNING id",
        [generation.id],
    )

    response = api_client_for(eli).get(f"/api/v1/generations/{generation.id}/stream/", HTTP_ACCEPT="text/event-stream")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    assert response["Cache-Control"] == "no-cache" and response["X-Accel-Buffering"] == "no"
    events = parse_sse(b"".join(response.streaming_content))
    assert events == [
        ("chunk", {"text": "The whole text.", "completion_tokens": 4}),
        (
            "done",
            {
                "status": "succeeded",
                "finish_reason": "stop",
                "output": "The whole text.",
                "usage": {"prompt_tokens": 2, "completion_tokens": 4, "time_to_first_token_ms": None, "total_ms": 12.5},
            },
        ),
    ]


def test_the_openapi_schema_is_served_and_generates_without_warnings(eli: Any) -> None:
    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    served = APIClient().get("/api/v1/schema/")

    assert served.status_code == 200
    schema = yaml.safe_load(served.content)
    assert schema["openapi"].startswith("3.")
    assert {
        "/api/v1/auth/token/",
        "/api/v1/generations/",
        "/api/v1/generations/{id}/",
        "/api/v1/generations/{id}/stream/",
    } <= set(schema["paths"])
    assert schema["components"]["schemas"]["Generation"]["properties"]["id"]["type"] == "string"
    assert (
        "text/event-stream" in schema["paths"]["/api/v1/generations/{id}/stream/"]["get"]["responses"]["200"]["content"]
    )
    docs = api_client_for(eli).get("/api/v1/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content


def test_creating_too_fast_is_throttled_with_429_and_retry_after(eli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.core.cache import cache

    from apps.content.api.views import GenerationCreateThrottle

    monkeypatch.setattr(GenerationCreateThrottle, "rate", "2/min", raising=False)
    cache.delete(f"throttle_generation_create_{eli.id}")
    client = api_client_for(eli)

    statuses = [client.post("/api/v1/generations/", {"prompt": "x"}, format="json").status_code for _ in range(3)]
    refused = client.post("/api/v1/generations/", {"prompt": "x"}, format="json")

    assert statuses == [201, 201, 429]
    assert int(refused["Retry-After"]) > 0
    assert client.get("/api/v1/generations/").status_code == 200  # reads keep their own, larger allowance
    assert raw_rows("shard1", "SELECT count(*) FROM content_generation") == [(2,)]
