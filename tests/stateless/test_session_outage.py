"""While the session Redis is down: 503 for whoever has a session, anonymous pages still work, nobody logged out."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.urls import reverse

from quantumquill.devstack.redis import RedisServer
from tests.conftest import ALL_DATABASES
from tests.stateless.conftest import PASSWORD

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


def _cookie_deleted(response: Any) -> bool:
    morsel = response.cookies.get(settings.SESSION_COOKIE_NAME)
    return morsel is not None and morsel.value == ""


@pytest.mark.slow
def test_a_signed_in_user_gets_503_during_the_outage_and_is_still_signed_in_after_it(
    logged_in_client: Client, session_redis_server: RedisServer
) -> None:
    session_key = logged_in_client.cookies[settings.SESSION_COOKIE_NAME].value
    session_redis_server.stop()

    for url in (reverse("content:list"), reverse("home"), reverse("content:create")):
        response = logged_in_client.get(url)
        assert response.status_code == 503, url
        assert int(response["Retry-After"]) > 0
        assert "can't confirm your sign-in" in response.content.decode()
        assert not _cookie_deleted(response), "an outage must never delete the session cookie"
    assert logged_in_client.post(reverse("content:create"), {"prompt": "x"}).status_code == 503

    session_redis_server.start()

    response = logged_in_client.get(reverse("content:list"))
    assert response.status_code == 200
    assert logged_in_client.cookies[settings.SESSION_COOKIE_NAME].value == session_key


@pytest.mark.slow
def test_anonymous_pages_keep_working_during_the_outage_and_a_login_answers_503(
    make_user: Any, session_redis_server: RedisServer
) -> None:
    make_user(1600, "gus", password=PASSWORD)
    session_redis_server.stop()
    visitor = Client()
    assert visitor.get(reverse("home")).status_code == 200
    assert visitor.get(reverse("accounts:login")).status_code == 200
    assert visitor.get(reverse("healthz")).status_code == 200

    login = visitor.post(reverse("accounts:login"), {"username": "gus", "password": PASSWORD})
    assert login.status_code == 503
    assert settings.SESSION_COOKIE_NAME not in login.cookies

    session_redis_server.start()
    assert visitor.post(reverse("accounts:login"), {"username": "gus", "password": PASSWORD}).status_code == 302
    assert visitor.get(reverse("content:list")).status_code == 200


@pytest.mark.slow
def test_a_logout_during_the_outage_is_refused_not_pretended(
    logged_in_client: Client, session_redis_server: RedisServer
) -> None:
    session_redis_server.stop()
    assert logged_in_client.post(reverse("accounts:logout")).status_code == 503
    session_redis_server.start()
    # The session was never deleted, so the user knows they are still signed in and can log out again.
    assert logged_in_client.get(reverse("content:list")).status_code == 200
    assert logged_in_client.post(reverse("accounts:logout")).status_code == 302
    assert logged_in_client.get(reverse("content:list")).status_code == 302


@pytest.mark.slow
def test_a_global_ignore_exceptions_setting_cannot_silence_the_session_store(
    logged_in_client: Client, session_redis_server: RedisServer
) -> None:
    # DJANGO_REDIS_IGNORE_EXCEPTIONS suits a cache; the sessions alias overrides it in its OPTIONS.
    with override_settings(DJANGO_REDIS_IGNORE_EXCEPTIONS=True, CACHES=settings.CACHES):
        session_redis_server.stop()
        assert logged_in_client.get(reverse("content:list")).status_code == 503


@pytest.mark.slow
def test_djangos_stock_cache_engine_would_log_the_user_out_for_good(
    logged_in_client: Client, session_redis_server: RedisServer
) -> None:
    """Why the engine and middleware exist: the stock pair reads an outage as "no session" and drops the cookie."""
    stock = {
        "SESSION_ENGINE": "django.contrib.sessions.backends.cache",
        "MIDDLEWARE": [
            "django.contrib.sessions.middleware.SessionMiddleware" if name.endswith("SessionMiddleware") else name
            for name in settings.MIDDLEWARE
        ],
    }
    with override_settings(**stock):
        stock_server = Client()  # a new handler, so the stock middleware is loaded
        stock_server.cookies = logged_in_client.cookies
        session_redis_server.stop()
        response = stock_server.get(reverse("content:list"))
        assert response.status_code == 302  # to the login page, as if logged out
        assert _cookie_deleted(response)


def test_a_full_session_store_refuses_new_logins_with_503_and_keeps_existing_sessions(
    logged_in_client: Client, make_user: Any, session_redis: Any
) -> None:
    make_user(1601, "hub", password=PASSWORD)
    session_redis.config_set("maxmemory", "1")  # noeviction at its limit: every write is refused with OOM
    try:
        login = Client().post(reverse("accounts:login"), {"username": "hub", "password": PASSWORD})
        assert login.status_code == 503
        assert logged_in_client.get(reverse("content:list")).status_code == 200  # reads still work
    finally:
        session_redis.config_set("maxmemory", "0")
