"""Sessions live in the dedicated Redis, in Django's cache format; login and logout hold on every server."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.core.cache import caches
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse

from apps.platform.middleware import RequestIdMiddleware
from apps.platform.request_id import RequestIdFilter
from apps.platform.session_store import SessionStore
from tests.conftest import ALL_DATABASES
from tests.stateless.conftest import PASSWORD, session_cache_key

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


def _session_key(client: Client) -> str:
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def test_a_login_stores_the_session_in_the_session_redis_under_djangos_cache_key(
    logged_in_client: Client, session_redis: redis.Redis
) -> None:
    key = session_cache_key(_session_key(logged_in_client))
    assert session_redis.exists(key)
    assert 0 < session_redis.ttl(key) <= settings.SESSION_COOKIE_AGE
    general = caches["default"].client.get_client()
    assert not general.exists(key), "sessions must not share the general cache"


def test_logging_in_gives_a_new_session_key_and_deletes_the_old_one(make_user: Any, session_redis: redis.Redis) -> None:
    make_user(1501, "eve", password=PASSWORD)
    anonymous = SessionStore()
    anonymous["cart"] = "kept across login"
    anonymous.save()
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = anonymous.session_key

    assert client.post(reverse("accounts:login"), {"username": "eve", "password": PASSWORD}).status_code == 302

    new_key = _session_key(client)
    assert new_key != anonymous.session_key
    assert not session_redis.exists(session_cache_key(anonymous.session_key))
    assert SessionStore(new_key)["cart"] == "kept across login"


def test_a_logout_deletes_the_session_so_a_copied_cookie_is_dead_on_every_server(logged_in_client: Client) -> None:
    other_server = Client()
    other_server.cookies[settings.SESSION_COOKIE_NAME] = _session_key(logged_in_client)
    assert other_server.get(reverse("content:list")).status_code == 200

    assert logged_in_client.post(reverse("accounts:logout")).status_code == 302

    response = other_server.get(reverse("content:list"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))


@pytest.mark.parametrize(
    "cookie",
    [
        "0123456789abcdefghijklmnopqrstuv",  # well formed, unknown
        "short",
        "../../etc/passwd",
        "x" * 3000,
        "caf%C3%A9\\u0000 ; ,",
        "*",
        "qq:1:django.contrib.sessions.cache",
    ],
)
def test_a_tampered_or_unknown_session_cookie_is_anonymous_never_an_error(cookie: str) -> None:
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = cookie
    assert client.get(reverse("home")).status_code == 200
    response = client.get(reverse("content:list"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))


def test_an_unknown_session_key_is_not_adopted_when_the_visitor_logs_in(make_user: Any) -> None:
    make_user(1502, "fay", password=PASSWORD)
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = "attackerchosenkey0123456789abcdef"
    client.post(reverse("accounts:login"), {"username": "fay", "password": PASSWORD})
    assert _session_key(client) != "attackerchosenkey0123456789abcdef"


def test_every_response_names_the_instance_that_served_it() -> None:
    with override_settings(INSTANCE_NAME="app-7"):
        assert Client().get(reverse("home"))["X-Served-By"] == "app-7"


def test_a_well_formed_request_id_from_the_load_balancer_is_kept_and_a_bad_one_replaced() -> None:
    assert Client().get(reverse("home"), headers={"X-Request-ID": "abc-123"})["X-Request-ID"] == "abc-123"
    replaced = Client().get(reverse("home"), headers={"X-Request-ID": "bad id\r\nX-Injected: 1"})["X-Request-ID"]
    assert replaced != "bad id" and len(replaced) == 32 and replaced.isalnum()


def test_log_lines_written_while_serving_a_request_carry_its_request_id() -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    handler.addFilter(RequestIdFilter())
    log = logging.getLogger("tests.stateless.request_id")
    log.addHandler(handler)

    def view(request: HttpRequest) -> HttpResponse:
        log.warning("inside the request")
        return HttpResponse("ok")

    try:
        request = RequestFactory().get("/", headers={"X-Request-ID": "trace-42"})
        RequestIdMiddleware(view)(request)
        log.warning("after the request")
    finally:
        log.removeHandler(handler)
    assert [record.request_id for record in records] == ["trace-42", "-"]  # type: ignore[attr-defined]


def test_the_engine_writes_what_djangos_own_cache_engine_reads(logged_in_client: Client) -> None:
    from django.contrib.sessions.backends.cache import SessionStore as DjangoCacheStore

    stock: SessionBase = DjangoCacheStore(_session_key(logged_in_client))
    assert stock.get("_auth_user_id") == "1500"
