"""API tokens: several named ones, listed, revoked, rotated, expired; only a hash stored; 401 says why."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.security.models import ApiToken
from tests.conftest import ALL_DATABASES, raw_rows

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)
PASSWORD = "hazel's long passphrase"


@pytest.fixture
def hazel(make_user: Any) -> Any:
    return make_user(1060, "hazel", password=PASSWORD)


def new_token(name: str = "laptop") -> dict[str, Any]:
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "hazel", "password": PASSWORD, "name": name}, format="json"
    )
    assert response.status_code == 200, response.content
    return dict(response.json())


def client_with(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_each_login_gets_a_new_named_token_and_only_its_hash_is_stored(hazel: Any) -> None:
    laptop, ci = new_token("laptop"), new_token("ci")
    assert laptop["token"] != ci["token"]
    assert laptop["token"].startswith(laptop["prefix"]) and len(laptop["prefix"]) == 10
    stored = raw_rows("default", "SELECT name, prefix, digest FROM security_apitoken ORDER BY id")
    assert stored == [
        ("laptop", laptop["prefix"], hashlib.sha256(laptop["token"].encode()).hexdigest()),
        ("ci", ci["prefix"], hashlib.sha256(ci["token"].encode()).hexdigest()),
    ]
    assert not any(laptop["token"] in str(row) or ci["token"] in str(row) for row in stored)

    listed = client_with(laptop["token"]).get("/api/v1/auth/tokens/").json()
    assert [(t["name"], t["prefix"]) for t in listed] == [("ci", ci["prefix"]), ("laptop", laptop["prefix"])]
    assert all(t["expires_at"] and "token" not in t for t in listed)
    assert next(t for t in listed if t["name"] == "laptop")["last_used_at"] is not None


def test_logging_out_revokes_the_token_and_the_next_request_gets_401_saying_so(hazel: Any) -> None:
    issued = new_token()
    client = client_with(issued["token"])
    assert client.get("/api/v1/generations/").status_code == 200
    assert client.delete("/api/v1/auth/token/").status_code == 204

    refused = client.get("/api/v1/generations/")
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"] == "Token"
    assert f"Token {issued['prefix']}… was revoked at" in refused.json()["detail"]
    assert new_token()["token"] != issued["token"]


def test_a_revoked_token_stops_at_once_and_others_keep_working(hazel: Any) -> None:
    laptop, ci = new_token("laptop"), new_token("ci")
    assert client_with(ci["token"]).delete(f"/api/v1/auth/tokens/{laptop['id']}/").status_code == 204
    assert client_with(laptop["token"]).get("/api/v1/generations/").status_code == 401
    assert client_with(ci["token"]).get("/api/v1/generations/").status_code == 200
    assert client_with(ci["token"]).delete(f"/api/v1/auth/tokens/{laptop['id']}/").status_code == 404


def test_rotating_gives_a_new_key_of_the_same_name_and_retires_the_old(hazel: Any) -> None:
    old = new_token("deploy")
    rotated = client_with(old["token"]).post(f"/api/v1/auth/tokens/{old['id']}/rotate/")
    assert rotated.status_code == 201
    body = rotated.json()
    assert body["name"] == "deploy" and body["token"] != old["token"]
    assert client_with(old["token"]).get("/api/v1/generations/").status_code == 401
    assert client_with(body["token"]).get("/api/v1/generations/").status_code == 200


def test_an_expired_token_gets_401_with_when_it_expired(hazel: Any) -> None:
    issued = new_token()
    ApiToken.objects.filter(prefix=issued["prefix"]).update(expires_at=timezone.now() - timedelta(minutes=1))
    refused = client_with(issued["token"]).get("/api/v1/generations/")
    assert refused.status_code == 401
    assert "expired at" in refused.json()["detail"] and "create a new one" in refused.json()["detail"]


def test_tokens_expire_after_the_configured_days(hazel: Any, settings: Any) -> None:
    settings.QQ_API_TOKEN_DAYS = 7
    issued = new_token()
    expires = ApiToken.objects.get(prefix=issued["prefix"]).expires_at
    assert timedelta(days=7) - timedelta(minutes=1) < expires - timezone.now() <= timedelta(days=7)


def test_an_unknown_token_gets_401_that_says_where_to_get_one() -> None:
    refused = client_with("qq_nothing").get("/api/v1/generations/")
    assert refused.status_code == 401
    assert "account page" in refused.json()["detail"]


def test_someone_elses_token_cannot_be_revoked_or_rotated(hazel: Any, make_user: Any) -> None:
    make_user(40, "ivan", password=PASSWORD)
    hazels = new_token()
    ivans = APIClient().post("/api/v1/auth/token/", {"username": "ivan", "password": PASSWORD}, format="json").json()
    ivan = client_with(ivans["token"])
    assert ivan.delete(f"/api/v1/auth/tokens/{hazels['id']}/").status_code == 404
    assert ivan.post(f"/api/v1/auth/tokens/{hazels['id']}/rotate/").status_code == 404
    assert client_with(hazels["token"]).get("/api/v1/generations/").status_code == 200
