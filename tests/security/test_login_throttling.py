"""Login throttling (django-axes): the web form, the token endpoint and sign-up lock out and recover."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from tests.conftest import ALL_DATABASES
from tests.support import wait_until

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)
PASSWORD = "jade's long passphrase"
LIMIT = 5


@pytest.fixture(autouse=True)
def short_lockout(settings: Any) -> None:
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(seconds=2)


@pytest.fixture
def jade(make_user: Any) -> Any:
    return make_user(1070, "jade", password=PASSWORD)


def web_login(username: str, password: str, *, address: str = "10.0.0.1") -> Any:
    return Client(REMOTE_ADDR=address).post("/accounts/login/", {"username": username, "password": password})


def lockout_over() -> bool:
    latest = AccessAttempt.objects.order_by("-attempt_time").first()
    return latest is None or latest.attempt_time + timedelta(seconds=2) < timezone.now()


def test_wrong_passwords_on_the_web_form_lock_the_username_out_then_it_recovers(jade: Any) -> None:
    for _ in range(LIMIT - 1):
        assert web_login("jade", "wrong").status_code == 200  # the form again, with its error
    locked = web_login("jade", "wrong")
    assert locked.status_code == 429
    assert locked["Retry-After"] == "2"
    assert b"Too many failed logins for this username or from this address. Try again in 2 seconds" in locked.content
    # The right password does not get in while locked, from another address either.
    assert web_login("jade", PASSWORD, address="10.9.9.9").status_code == 429

    wait_until(lockout_over, timeout=10, what="the lockout to end")
    assert web_login("jade", PASSWORD).status_code == 302


def test_one_address_trying_many_usernames_is_locked_out(jade: Any) -> None:
    for n in range(LIMIT):
        web_login(f"nobody{n}", "wrong", address="10.0.0.66")
    assert web_login("jade", PASSWORD, address="10.0.0.66").status_code == 429
    assert web_login("jade", PASSWORD, address="10.0.0.7").status_code == 302


def test_the_token_endpoint_locks_out_with_a_json_429(jade: Any) -> None:
    client = APIClient(REMOTE_ADDR="10.0.0.2")
    for _ in range(LIMIT):
        client.post("/api/v1/auth/token/", {"username": "jade", "password": "wrong"}, format="json")
    locked = client.post("/api/v1/auth/token/", {"username": "jade", "password": PASSWORD}, format="json")
    assert locked.status_code == 429
    assert locked.json()["code"] == "login_locked_out"
    assert "Try again in 2 seconds" in locked.json()["detail"]
    assert locked["Retry-After"] == "2"


def test_staff_see_failed_logins_and_who_is_locked_out(jade: Any, make_user: Any) -> None:
    for _ in range(LIMIT):
        web_login("jade", "wrong", address="10.0.0.3")
    staff = make_user(50, "kim")
    staff.is_staff = True
    staff.save()
    client = Client()
    client.force_login(staff)
    page = client.get("/accounts/staff/failed-logins/")
    assert page.status_code == 200
    assert b"<td>jade</td>" in page.content and b"<td>10.0.0.3</td>" in page.content
    assert b'<strong class="danger">yes</strong>' in page.content
    client.force_login(jade)
    assert client.get("/accounts/staff/failed-logins/").status_code == 302  # not staff: to the login page


def test_sign_ups_from_one_address_are_limited(settings: Any) -> None:
    settings.QQ_SIGNUP_RATE = "2/hour"
    cache.delete_pattern("*signup-rate*")
    statuses = []
    for n in range(3):
        response = Client(REMOTE_ADDR="10.0.0.4").post(
            "/accounts/signup/",
            {"username": f"new{n}", "password1": "a long passphrase", "password2": "a long passphrase"},
        )
        statuses.append(response.status_code)
    assert statuses == [302, 302, 429]
    assert b"Too many new accounts from this address" in response.content
    assert int(response["Retry-After"]) > 0


def test_behind_the_proxy_the_address_is_the_one_nginx_saw(settings: Any, jade: Any) -> None:
    settings.QQ_TRUST_PROXY_HEADERS = True
    for _ in range(LIMIT):
        Client(REMOTE_ADDR="127.0.0.1").post(
            "/accounts/login/", {"username": "x", "password": "y"}, HTTP_X_FORWARDED_FOR="1.2.3.4, 10.0.0.5"
        )
    assert AccessAttempt.objects.filter(ip_address="10.0.0.5").exists()
    # Another client behind the same proxy is not locked out.
    other = Client(REMOTE_ADDR="127.0.0.1").post(
        "/accounts/login/", {"username": "jade", "password": PASSWORD}, HTTP_X_FORWARDED_FOR="10.0.0.8"
    )
    assert other.status_code == 302
