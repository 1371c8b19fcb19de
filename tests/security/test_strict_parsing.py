"""Strict request parsing: over-deep or oversized JSON and NUL bytes get a clear 4xx, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.security.parsers import json_depth
from apps.security.tokens import api_token_create
from tests.conftest import ALL_DATABASES, raw_rows

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


@pytest.fixture
def gail(make_user: Any) -> Any:
    return make_user(1050, "gail")


@pytest.fixture
def gail_api(gail: Any) -> APIClient:
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user_id=gail.pk, name='test').key}")
    return client


def test_json_nested_3000_deep_at_the_token_endpoint_is_400_json_not_500() -> None:
    body = '{"username":' + "[" * 3000 + "]" * 3000 + "}"
    response = APIClient(raise_request_exception=False).post(
        "/api/v1/auth/token/", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["detail"] == "JSON nested more than 32 levels deep; at most 32 levels are accepted."


def test_json_nested_1000_deep_when_creating_a_generation_is_400_and_stores_nothing(gail_api: APIClient) -> None:
    body = '{"prompt": "hi", "stop": ' + "[" * 1000 + "]" * 1000 + "}"
    response = gail_api.post("/api/v1/generations/", body, content_type="application/json")
    assert response.status_code == 400
    assert "levels deep" in response.json()["detail"]
    assert raw_rows("shard2", "SELECT count(*) FROM content_generation") == [(0,)]


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    assert json_depth('{"a": "[[[[[[{{{{", "b": ["\\"[[", "\\\\"], "c": [[]]}') == 3
    assert json_depth("[" * 3000 + "]" * 3000, stop_above=32) == 33


def test_a_body_over_the_size_limit_is_413_json(gail_api: APIClient, settings: Any) -> None:
    settings.QQ_API_JSON_MAX_BYTES = 2048
    response = gail_api.post("/api/v1/generations/", {"prompt": "x" * 3000}, format="json")
    assert response.status_code == 413
    assert response.json()["detail"] == "The JSON body is larger than 2048 bytes; send less data per request."


def test_a_nul_byte_in_the_token_header_is_400_not_a_database_error() -> None:
    response = Client(raise_request_exception=False).get("/api/v1/generations/", HTTP_AUTHORIZATION="Token a\x00b")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "The request has a NUL byte in header Authorization; remove it and send the request again.",
        "code": "nul_byte",
    }


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "a\x00b"},
        {"prompt": "ok", "stop": ["\x00"]},
        {"prompt": "ok", "\x00": 1},
        {"prompt": "\ud800"},
    ],
)
def test_nul_and_lone_surrogates_in_json_strings_are_400(gail_api: APIClient, body: dict[str, Any]) -> None:
    import json

    raw = json.dumps(body)  # escapes NUL as \u0000 and the surrogate as \ud800, as a client would send them
    response = gail_api.post("/api/v1/generations/", raw, content_type="application/json")
    assert response.status_code == 400
    assert "NUL characters" in response.json()["detail"]


def test_nul_bytes_in_a_form_or_the_query_string_get_a_400_page(gail: Any) -> None:
    client = Client(raise_request_exception=False)
    client.force_login(gail)
    form = client.post("/generations/new/", {"prompt": "hello\x00world", "max_tokens": 10})
    assert form.status_code == 400
    assert b"NUL byte in a form field" in form.content
    query = client.get("/generations/?page=1%00")
    assert query.status_code == 400
    assert b"NUL byte in the query string" in query.content
    assert raw_rows("shard2", "SELECT count(*) FROM content_generation") == [(0,)]
