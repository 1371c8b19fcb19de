"""Sign up, log in, log out: users live on the control database."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from tests.conftest import ALL_DATABASES, raw_rows

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


def test_signing_up_creates_the_user_on_the_control_database_and_logs_them_in() -> None:
    client = Client()
    response = client.post(
        reverse("accounts:signup"),
        {"username": "newbie", "password1": "a-long-passphrase-9", "password2": "a-long-passphrase-9"},
    )
    assert response.status_code == 302
    assert raw_rows("default", "SELECT username FROM auth_user") == [("newbie",)]
    assert client.get(reverse("content:list")).status_code == 200


def test_a_mismatched_signup_is_refused_with_a_message() -> None:
    response = Client().post(
        reverse("accounts:signup"), {"username": "x", "password1": "a-long-passphrase-9", "password2": "different-9"}
    )
    assert response.status_code == 400
    assert "password fields didn" in response.content.decode()
    assert not User.objects.exists()


def test_login_and_logout(make_user: Any) -> None:
    make_user(1500, "dora", password="correct horse battery")
    client = Client()
    bad = client.post(reverse("accounts:login"), {"username": "dora", "password": "wrong"})
    assert bad.status_code == 200 and "correct username and password" in bad.content.decode()
    good = client.post(reverse("accounts:login"), {"username": "dora", "password": "correct horse battery"})
    assert good.status_code == 302
    assert client.get(reverse("content:list")).status_code == 200
    assert client.post(reverse("accounts:logout")).status_code == 302
    assert client.get(reverse("content:list")).status_code == 302
