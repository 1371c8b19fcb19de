"""Through PgBouncer: an exhausted pool answers 503 with Retry-After after a bounded wait, and a pooler
restarted in the middle of traffic costs a few 503s, never a 500, a hung request or an acknowledged write."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connections

from apps.security.tokens import api_token_create
from quantumquill.devstack.pgbouncer import PgBouncer
from quantumquill.devstack.stack import free_port, stack_from_state
from shardrouter.control import control_connection
from tests.conftest import ALL_DATABASES
from tests.moves.support import on_db
from tests.pgbouncer.support import call
from tests.support import wait_until
from tests.web.conftest import start_app_server

pytestmark = [pytest.mark.slow, pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)]


def token_for(user: Any) -> str:
    return api_token_create(user_id=user.pk, name="pgbouncer test").key


def test_an_exhausted_pool_answers_503_with_retry_after_instead_of_hanging(make_user: Any, tmp_path: Path) -> None:
    token = token_for(make_user(40, "ivy"))
    # A pooler with one server connection for the control database, and a short wait for it.
    # (Its folder is under the test stack's, which the pooler's unprivileged user can enter; tmp_path is not.)
    test_stack = stack_from_state()
    small = PgBouncer(
        "pgbouncer-small",
        test_stack.profile.data_dir / "pgbouncer-exhaustion",
        port=free_port(),
        server_port=test_stack.ports["pg0"],
        pool_size=1,
        reserve_pool_size=0,
        max_db_connections=1,
        query_wait_timeout=2,
    )
    small.start()
    control = settings.DATABASES["default"]["NAME"]
    try:
        server = start_app_server(log_path=tmp_path / "gunicorn.log", DATABASE_URL=small.url(control))
    except BaseException:
        small.stop()  # the pooler outlives a failed test otherwise
        raise
    holder: psycopg.Connection[Any] | None = None
    try:
        assert call(server.url, "/api/v1/generations/", token=token)[0] == 200

        # Another client holds the only server connection in an open transaction.
        holder = psycopg.connect(host="127.0.0.1", port=small.port, dbname=control, user="postgres")
        holder.execute("SELECT 1")

        # The request waits at most PgBouncer's query_wait_timeout, then gets a clear 503 (the client's own
        # timeout, 30 s, would fail the test with a hung request).
        status, headers, body = call(server.url, "/api/v1/generations/", token=token)
        assert status == 503, body
        assert headers["Retry-After"] == "5"
        waiting = [row for row in small.admin("SHOW POOLS") if row["database"] == control]
        assert waiting and waiting[0]["sv_active"] == 1

        holder.rollback()
        holder.close()
        holder = None
        # Service comes back by itself once a server connection is free.
        wait_until(
            lambda: call(server.url, "/api/v1/generations/", token=token)[0] == 200,
            timeout=20,
            what="the API to answer 200 again",
        )
    finally:
        if holder is not None:
            holder.close()
        server.process.terminate()
        server.process.wait(15)
        small.stop()


class HttpLoad:
    """Threads creating and listing generations through the API; every 201 goes into the ledger."""

    def __init__(self, base_url: str, tokens: dict[int, str], threads: int = 4) -> None:
        self.base_url = base_url
        self.tokens = tokens
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.acknowledged: dict[int, int] = {}  # generation id -> user id
        self.statuses: Counter[int] = Counter()
        self.bad: list[str] = []
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def __enter__(self) -> HttpLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def created(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def wait_for_creates(self, count: int) -> None:
        target = self.created() + count
        wait_until(lambda: self.created() >= target, timeout=60, what=f"{count} more acknowledged creates")

    def _run(self, index: int) -> None:
        users = sorted(self.tokens)
        n = 0
        while not self.stop.is_set():
            user = users[(index + n) % len(users)]
            n += 1
            if n % 3:
                status, headers, body = call(
                    self.base_url, "/api/v1/generations/", token=self.tokens[user], body={"prompt": f"u{user} {n}"}
                )
            else:
                status, headers, body = call(self.base_url, "/api/v1/generations/", token=self.tokens[user])
            with self.lock:
                self.statuses[status] += 1
                if status == 201:
                    self.acknowledged[int(json.loads(body)["id"])] = user
                elif status not in (200, 503) or (status == 503 and "Retry-After" not in headers):
                    self.bad.append(f"{status} {headers} {body[:300]}")


def test_a_pgbouncer_restart_under_load_costs_no_500_no_hang_and_no_acknowledged_write(
    pgbouncers: dict[str, PgBouncer], make_user: Any, tmp_path: Path
) -> None:
    tokens = {user_id: token_for(make_user(user_id)) for user_id in (61, 62, 1061, 1062)}
    server = start_app_server(log_path=tmp_path / "gunicorn.log")
    try:
        with HttpLoad(server.url, tokens) as load:
            load.wait_for_creates(20)
            # The shard2 server's pooler, then the control server's (sessions' users, the shard map).
            for name in ("pg2", "pg0"):
                pgbouncers[name].restart()
                load.wait_for_creates(20)
        assert load.bad == [], load.bad[:3]
        assert load.statuses[201] >= 60
    finally:
        server.process.terminate()
        server.process.wait(15)
        # This process's own connections went through the restarted poolers too.
        connections.close_all()
        control_connection.close()

    # Every acknowledged generation is on its owner's shard, exactly once.
    for alias, users in (("shard1", (61, 62)), ("shard2", (1061, 1062))):
        stored = Counter(
            gid for (gid,) in on_db(alias, "SELECT id FROM content_generation WHERE user_id = ANY(%s)", [list(users)])
        )
        expected = {gid for gid, user in load.acknowledged.items() if user in users}
        assert expected - set(stored) == set()
        assert [gid for gid, n in stored.items() if n > 1] == []
