"""The OpenAPI schema is the API's contract: schemathesis holds every operation to it (fixed seed, bounded)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import yaml
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings

from apps.security.tokens import api_token_create
from tests.conftest import ALL_DATABASES

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


def _load_schema() -> Any:
    """The schema the API publishes (generated as /api/v1/schema/ generates it), served by the app in-process."""
    loaded = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
    loaded.app = get_wsgi_application()
    return loaded


schema = _load_schema()


@pytest.fixture
def in_process_requests() -> Iterator[None]:
    # Served in this process, inside the test's transaction: like Django's test client, keep the end of
    # each request from closing the database connection that holds it.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def paula(make_user: Any) -> Any:
    return make_user(1080, "paula")


def published_schema() -> dict[str, Any]:
    response = Client().get("/api/v1/schema/")
    assert response.status_code == 200
    return dict(yaml.safe_load(response.content))


def test_field_constraints_match_validation_and_the_web_form() -> None:
    request = published_schema()["components"]["schemas"]["GenerationCreate"]["properties"]
    assert request["prompt"]["type"] == "string" and request["prompt"]["minLength"] == 1
    assert request["prompt"]["maxLength"] == 4000
    assert request["top_p"]["minimum"] == 0.01 and request["top_p"]["maximum"] == 1
    assert request["stop"]["items"]["minLength"] == 1


def test_every_operation_documents_its_errors_with_the_error_shape() -> None:
    document = published_schema()
    assert document["components"]["schemas"]["Error"]["required"] == ["detail"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert {"400", "429", "503"} <= codes, (method, path)
            if operation.get("security") not in ([], [{}]):
                assert "401" in codes, (method, path)
            if "{" in path:
                assert "404" in codes, (method, path)


def test_the_event_stream_is_documented_as_text_event_stream() -> None:
    stream = published_schema()["paths"]["/api/v1/generations/{id}/stream/"]["get"]["responses"]["200"]
    assert list(stream["content"]) == ["text/event-stream"]


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=15, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_to_its_schema(case: Any, paula: Any, in_process_requests: None) -> None:
    # A fresh token per case: the run also exercises DELETE /auth/token/, which revokes the one it sends.
    key = api_token_create(user_id=paula.pk, name="contract").key
    case.call_and_validate(headers={"Authorization": f"Token {key}"})
