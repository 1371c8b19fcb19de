"""The account page manages API tokens: a new key is shown once, then only its prefix; revoke and rotate work."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.security.models import ApiToken
from tests.conftest import ALL_DATABASES

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


@pytest.fixture
def sam(make_user: Any) -> Client:
    client = Client()
    client.force_login(make_user(70, "sam"))
    return client


def shown_key(content: bytes) -> str:
    match = re.search(rb'<code class="key" id="new-key">(qq_[A-Za-z0-9_-]+)</code>', content)
    assert match, "the new key is on the page"
    return match.group(1).decode()


def works(key: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/v1/generations/").status_code == 200


def test_a_token_made_on_the_page_works_is_shown_once_and_can_be_rotated_and_revoked(sam: Client) -> None:
    created = sam.post("/accounts/account/tokens/", {"name": "backup script"})
    assert created.status_code == 201 and created["Cache-Control"] == "no-store"
    key = shown_key(created.content)
    assert works(key)
    listing = sam.get("/accounts/account/").content
    assert b"backup script" in listing and key[:10].encode() in listing and key.encode() not in listing

    token = ApiToken.objects.get(name="backup script")
    rotated = sam.post(f"/accounts/account/tokens/{token.pk}/rotate/")
    new_key = shown_key(rotated.content)
    assert new_key != key and works(new_key) and not works(key)

    new_token = ApiToken.objects.get(name="backup script", revoked_at__isnull=True)
    assert sam.post(f"/accounts/account/tokens/{new_token.pk}/revoke/").status_code == 302
    assert not works(new_key)
    assert b"You have no active API tokens." in sam.get("/accounts/account/").content


def test_someone_elses_token_cannot_be_revoked_from_the_page(sam: Client, make_user: Any) -> None:
    other = Client()
    other.force_login(make_user(71, "tia"))
    key = shown_key(other.post("/accounts/account/tokens/", {"name": "tia's"}).content)
    token = ApiToken.objects.get(name="tia's")
    assert sam.post(f"/accounts/account/tokens/{token.pk}/revoke/").status_code == 404
    assert sam.post(f"/accounts/account/tokens/{token.pk}/rotate/").status_code == 404
    assert works(key)


def test_the_account_page_needs_a_login() -> None:
    response = Client().get("/accounts/account/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
