"""Master failover under signed-in load: nginx, two gunicorn servers, sessions on a real Redis Cluster.

A master is killed with SIGKILL while every signed-in user keeps requesting a
page. Its replica is promoted; until then its users get 503 with Retry-After,
never a 500 and never a logout, and afterwards everyone carries on with the
same session. The measured window is printed and recorded as a test property.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from quantumquill.devstack.redis_cluster import RedisClusterStack
from quantumquill.devstack.stack import free_port
from quantumquill.devstack.web import GunicornServer, NginxBalancer
from tests.conftest import ALL_DATABASES, child_env
from tests.stateless.cluster import cluster_env, master_port_of_session
from tests.stateless.conftest import PASSWORD
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]

PAGE = "/generations/"
USERS = 8


@pytest.fixture
def cluster_web_tier(
    tmp_path: Path,
    redis_cluster: RedisClusterStack,
) -> Iterator[tuple[NginxBalancer, RedisClusterStack]]:
    env = child_env(
        DJANGO_DEBUG="0",
        QQ_HTTPS="0",  # plain HTTP through this nginx (the HTTPS path is tested in test_load_balanced.py)
        GUNICORN_ACCESS_LOG="-",
        **cluster_env(redis_cluster, SESSION_REDIS_RETRY_AFTER="2"),
    )
    app1 = GunicornServer("app1", free_port(), env, tmp_path, workers=1, threads=4)
    app2 = GunicornServer("app2", free_port(), env, tmp_path, workers=1, threads=4)
    nginx = NginxBalancer(free_port(), [f"127.0.0.1:{app1.port}", f"127.0.0.1:{app2.port}"], tmp_path / "nginx")
    try:
        app1.start()
        app2.start()
        nginx.start()
        yield nginx, redis_cluster
    finally:
        nginx.stop()
        app1.stop(timeout=5)
        app2.stop(timeout=5)


def sign_in(base: str, username: str) -> requests.Session:
    """Log in through the load balancer with the CSRF dance; the returned browser carries the session cookie."""
    browser = requests.Session()
    page = browser.get(base + "/accounts/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, "the login page has a CSRF form"
    login = browser.post(
        base + "/accounts/login/",
        data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)},
        allow_redirects=False,
        timeout=10,
    )
    assert login.status_code == 302, login.status_code
    return browser


@dataclass
class Answer:
    at: float
    status: int
    retry_after: str | None
    location: str | None
    served_by: str | None


@dataclass
class SignedInLoad:
    """One thread per user, GETting the signed-in page in a loop until stopped; every answer is kept."""

    base: str
    browsers: dict[str, requests.Session]
    answers: dict[str, list[Answer]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for name, browser in self.browsers.items():
            self.answers[name] = []
            thread = threading.Thread(target=self._run, args=(browser, self.answers[name]), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _run(self, browser: requests.Session, answers: list[Answer]) -> None:
        while not self.stop.is_set():
            response = browser.get(self.base + PAGE, allow_redirects=False, timeout=30)
            answers.append(
                Answer(
                    time.monotonic(),
                    response.status_code,
                    response.headers.get("Retry-After"),
                    response.headers.get("Location"),
                    response.headers.get("X-Served-By"),
                )
            )

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def ok_since(self, name: str, moment: float) -> Callable[[], bool]:
        return lambda: any(a.status == 200 and a.at > moment for a in self.answers[name])


def test_a_master_killed_under_signed_in_load_costs_its_users_a_503_window_never_a_logout(
    cluster_web_tier: tuple[NginxBalancer, RedisClusterStack], make_user: Any, record_property: Any
) -> None:
    nginx, stack = cluster_web_tier
    for n in range(USERS):
        make_user(4000 + n, f"fo{n}", password=PASSWORD)
    browsers = {f"fo{n}": sign_in(nginx.url, f"fo{n}") for n in range(USERS)}
    cookies = {name: browser.cookies["sessionid"] for name, browser in browsers.items()}
    home = {name: master_port_of_session(stack, cookie) for name, cookie in cookies.items()}
    busiest = max(set(home.values()), key=list(home.values()).count)
    victim = next(m for m in stack.masters() if m.port == busiest)
    replica = stack.replica_of(victim)
    affected = sorted(name for name, port in home.items() if port == victim.port)

    load = SignedInLoad(nginx.url, browsers)
    load.start()
    try:
        started = time.monotonic()
        wait_until(lambda: all(load.ok_since(name, started)() for name in browsers), what="every user served")
        killed_at = time.monotonic()
        stack.kill(victim.port)
        stack.wait_promoted(replica.port)
        for name in browsers:
            wait_until(load.ok_since(name, time.monotonic()), timeout=30, what=f"{name} served after the failover")
    finally:
        load.finish()

    answers = [answer for name in browsers for answer in load.answers[name]]
    assert {answer.served_by for answer in answers} == {"app1", "app2"}, "both app servers served the users"
    assert {answer.status for answer in answers} <= {200, 503}, "never a 500, never a redirect to the login page"
    assert all(answer.retry_after and int(answer.retry_after) > 0 for answer in answers if answer.status == 503)
    during = [a for name in affected for a in load.answers[name] if a.at > killed_at]
    assert any(a.status == 503 for a in during), "the affected users were told to retry during the failover"
    windows = []
    for name in affected:
        last_503 = max((a.at for a in load.answers[name] if a.status == 503), default=killed_at)
        first_ok = min(a.at for a in load.answers[name] if a.status == 200 and a.at > last_503)
        windows.append(first_ok - killed_at)
    for name, browser in browsers.items():
        assert browser.cookies["sessionid"] == cookies[name], f"{name} kept the same session"
        assert browser.get(nginx.url + PAGE, allow_redirects=False, timeout=10).status_code == 200
    others = [a for name in browsers if name not in affected for a in load.answers[name] if a.at > killed_at]
    record_property("failover_window_seconds", round(max(windows), 3))
    print(
        f"\nfailover window (kill -9 to the first 200 of an affected user): max {max(windows):.2f} s; "
        f"{len(affected)} of {USERS} users affected, {len(during)} of their requests answered "
        f"{sum(a.status == 503 for a in during)} x 503 and the rest 200; the other users' {len(others)} requests "
        f"{sum(a.status == 503 for a in others)} x 503; no other status"
    )
