"""End to end: nginx in front of two gunicorn app servers; a session works on whichever server answers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from quantumquill.devstack.stack import free_port
from quantumquill.devstack.web import GunicornServer, NginxBalancer
from tests.conftest import ALL_DATABASES, child_env
from tests.stateless.conftest import PASSWORD
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]

LIST = "/generations/"


@pytest.fixture
def web_tier(tmp_path: Path) -> Iterator[tuple[NginxBalancer, GunicornServer, GunicornServer]]:
    env = child_env(DJANGO_DEBUG="0", GUNICORN_ACCESS_LOG="-")
    app1 = GunicornServer("app1", free_port(), env, tmp_path, workers=1, threads=2)
    app2 = GunicornServer("app2", free_port(), env, tmp_path, workers=1, threads=2)
    nginx = NginxBalancer(free_port(), [f"127.0.0.1:{app1.port}", f"127.0.0.1:{app2.port}"], tmp_path / "nginx")
    try:
        app1.start()
        app2.start()
        nginx.start()
        yield nginx, app1, app2
    finally:
        nginx.stop()
        app1.stop(timeout=5)
        app2.stop(timeout=5)


def _csrf_token(browser: requests.Session, url: str) -> str:
    page = browser.get(url, timeout=10)
    assert page.status_code == 200
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert match, "the page has a CSRF form"
    return match.group(1)


def _served_by(browser: requests.Session, base: str, count: int) -> list[str]:
    """GET the signed-in page ``count`` times; every answer must be the page itself, not a login redirect."""
    names = []
    for _ in range(count):
        response = browser.get(base + LIST, allow_redirects=False, timeout=10)
        assert response.status_code == 200, (response.status_code, response.headers.get("Location"))
        names.append(response.headers["X-Served-By"])
    return names


def test_a_session_holds_across_servers_crashes_restarts_and_logout(
    web_tier: tuple[NginxBalancer, GunicornServer, GunicornServer], make_user: Any
) -> None:
    nginx, app1, app2 = web_tier
    make_user(2000, "joy", password=PASSWORD)
    browser = requests.Session()

    # Log in through the load balancer.
    token = _csrf_token(browser, nginx.url + "/accounts/login/")
    login = browser.post(
        nginx.url + "/accounts/login/",
        data={"username": "joy", "password": PASSWORD, "csrfmiddlewaretoken": token},
        allow_redirects=False,
        timeout=10,
    )
    assert login.status_code == 302

    # Round-robin: both servers serve the same signed-in user.
    assert set(_served_by(browser, nginx.url, 6)) == {"app1", "app2"}

    # The request ID set at the edge reaches the app server's access log.
    traced = browser.get(nginx.url + LIST, headers={"X-Request-ID": "e2e-trace-1"}, timeout=10)
    assert traced.headers["X-Request-ID"] == "e2e-trace-1"
    server = app1 if traced.headers["X-Served-By"] == "app1" else app2
    # Log lines are flushed asynchronously: wait for them.
    wait_until(
        lambda: "request_id=e2e-trace-1 served_by=" + server.name in server.log_file.read_text(),
        timeout=5,
        what="the request ID in the app server's log",
    )
    wait_until(lambda: "request_id=e2e-trace-1" in nginx.access_log.read_text(), timeout=5, what="nginx's log line")

    # One server crashes: the user sees no error, the other server serves everything, even a POST.
    app1.kill()
    assert set(_served_by(browser, nginx.url, 6)) == {"app2"}
    token = _csrf_token(browser, nginx.url + "/generations/new/")
    created = browser.post(
        nginx.url + "/generations/new/",
        data={
            "prompt": "a haiku",
            "max_tokens": "20",
            "temperature": "0.8",
            "top_p": "0.95",
            "csrfmiddlewaretoken": token,
        },
        allow_redirects=False,
        timeout=10,
    )
    assert created.status_code == 302 and created.headers["X-Served-By"] == "app2"
    wait_until(
        lambda: f"upstream=127.0.0.1:{app1.port}, 127.0.0.1:{app2.port}" in nginx.access_log.read_text(),
        timeout=5,
        what="nginx to log the retry on the second server",
    )

    # Both restart: still signed in, and both serve again once nginx retries the recovered server.
    app2.stop()
    app1.start()
    app2.start()
    seen: set[str] = set()
    wait_until(
        lambda: seen.update(_served_by(browser, nginx.url, 2)) or seen == {"app1", "app2"},
        timeout=30,
        what="both restarted servers to answer through nginx",
        poll=0.2,
    )

    # Log out on app1 directly: the same cookie is dead on app2 and through the balancer.
    token = _csrf_token(browser, app1.url + LIST)
    logout = browser.post(
        app1.url + "/accounts/logout/", data={"csrfmiddlewaretoken": token}, allow_redirects=False, timeout=10
    )
    assert logout.status_code == 302 and logout.headers["X-Served-By"] == "app1"
    stolen = requests.Session()
    stolen.cookies.set("sessionid", login.cookies["sessionid"])
    for base in (app2.url, nginx.url):
        response = stolen.get(base + LIST, allow_redirects=False, timeout=10)
        assert response.status_code == 302 and "/accounts/login/" in response.headers["Location"]
