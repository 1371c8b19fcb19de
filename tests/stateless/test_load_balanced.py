"""End to end over HTTPS: nginx in front of two gunicorn app servers with production settings (DEBUG off);
a session works on whichever server answers, and plain HTTP is sent to HTTPS."""

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
from tests.support.tls import self_signed_certificate

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]

LIST = "/generations/"


@pytest.fixture
def web_tier(tmp_path: Path) -> Iterator[tuple[NginxBalancer, GunicornServer, GunicornServer]]:
    env = child_env(DJANGO_DEBUG="0", GUNICORN_ACCESS_LOG="-")
    app1 = GunicornServer("app1", free_port(), env, tmp_path, workers=1, threads=2)
    app2 = GunicornServer("app2", free_port(), env, tmp_path, workers=1, threads=2)
    nginx = NginxBalancer(
        free_port(),
        [f"127.0.0.1:{app1.port}", f"127.0.0.1:{app2.port}"],
        tmp_path / "nginx",
        tls_port=free_port(),
        tls_files=self_signed_certificate(tmp_path / "tls"),
    )
    try:
        app1.start()
        app2.start()
        nginx.start()
        yield nginx, app1, app2
    finally:
        nginx.stop()
        app1.stop(timeout=5)
        app2.stop(timeout=5)


def https_browser(nginx: NginxBalancer) -> requests.Session:
    """A client that trusts the test certificate and, like a browser, sends the page's origin with a POST."""
    browser = requests.Session()
    assert nginx.tls_files is not None
    browser.trust_env = False  # else a CA bundle named in the environment would replace the one given here
    browser.verify = str(nginx.tls_files[0])
    browser.headers["Origin"] = nginx.https_url
    return browser


def behind_proxy(browser: requests.Session, app: GunicornServer) -> dict[str, str]:
    """Headers that reach an app server directly as nginx would forward an HTTPS request (secure cookies too)."""
    cookies = "; ".join(f"{c.name}={c.value}" for c in browser.cookies)
    return {"X-Forwarded-Proto": "https", "Cookie": cookies, "Origin": f"https://127.0.0.1:{app.port}"}


def _csrf_token(browser: requests.Session, url: str, headers: dict[str, str] | None = None) -> str:
    page = browser.get(url, timeout=10, headers=headers)
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
    browser = https_browser(nginx)
    base = nginx.https_url

    # Plain HTTP is redirected to HTTPS; HTTPS answers carry HSTS.
    plain = requests.get(nginx.url + "/accounts/login/", allow_redirects=False, timeout=10)
    assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")
    assert requests.get(nginx.url + "/healthz", timeout=10).status_code == 200  # probes stay on HTTP

    # Log in through the load balancer, over HTTPS: the session cookie is Secure.
    token = _csrf_token(browser, base + "/accounts/login/")
    login = browser.post(
        base + "/accounts/login/",
        data={"username": "joy", "password": PASSWORD, "csrfmiddlewaretoken": token},
        allow_redirects=False,
        timeout=10,
    )
    assert login.status_code == 302
    assert "Secure" in login.headers["Set-Cookie"] and "max-age=31536000" in login.headers["Strict-Transport-Security"]

    # Round-robin: both servers serve the same signed-in user.
    assert set(_served_by(browser, base, 6)) == {"app1", "app2"}

    # The request ID set at the edge reaches the app server's access log.
    traced = browser.get(base + LIST, headers={"X-Request-ID": "e2e-trace-1"}, timeout=10)
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
    assert set(_served_by(browser, base, 6)) == {"app2"}
    token = _csrf_token(browser, base + "/generations/new/")
    created = browser.post(
        base + "/generations/new/",
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
        lambda: seen.update(_served_by(browser, base, 2)) or seen == {"app1", "app2"},
        timeout=30,
        what="both restarted servers to answer through nginx",
        poll=0.2,
    )

    # Log out on app1 directly: the same cookie is dead on app2 and through the balancer.
    token = _csrf_token(browser, app1.url + LIST, headers=behind_proxy(browser, app1))
    logout = browser.post(
        app1.url + "/accounts/logout/",
        data={"csrfmiddlewaretoken": token},
        headers=behind_proxy(browser, app1),
        allow_redirects=False,
        timeout=10,
    )
    assert logout.status_code == 302 and logout.headers["X-Served-By"] == "app1"
    stolen = https_browser(nginx)
    stolen.cookies.set("sessionid", login.cookies["sessionid"])
    for response in (
        stolen.get(app2.url + LIST, headers=behind_proxy(stolen, app2), allow_redirects=False, timeout=10),
        stolen.get(base + LIST, allow_redirects=False, timeout=10),
    ):
        assert response.status_code == 302 and "/accounts/login/" in response.headers["Location"]


def test_a_revoked_api_token_stops_working_on_every_server_behind_nginx(
    web_tier: tuple[NginxBalancer, GunicornServer, GunicornServer], make_user: Any
) -> None:
    nginx, *_ = web_tier
    make_user(2010, "kit", password=PASSWORD)
    client = https_browser(nginx)
    issued = client.post(
        nginx.https_url + "/api/v1/auth/token/",
        json={"username": "kit", "password": PASSWORD, "name": "e2e"},
        timeout=10,
    )
    assert issued.status_code == 200, issued.text
    client.headers["Authorization"] = f"Token {issued.json()['token']}"
    served = {client.get(nginx.https_url + "/api/v1/generations/", timeout=10).headers["X-Served-By"] for _ in range(4)}
    assert served == {"app1", "app2"}

    assert client.delete(nginx.https_url + "/api/v1/auth/token/", timeout=10).status_code == 204

    refused = [client.get(nginx.https_url + "/api/v1/generations/", timeout=10) for _ in range(4)]
    assert {r.headers["X-Served-By"] for r in refused} == {"app1", "app2"}
    assert {r.status_code for r in refused} == {401}
    assert all("was revoked at" in r.json()["detail"] for r in refused)
