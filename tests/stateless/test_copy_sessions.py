"""``copy_sessions_to_redis``: switching from database to Redis sessions logs nobody out, and re-runs are safe."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.contrib.sessions.models import Session
from django.core.cache import caches
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone

from apps.platform.session_store import SessionStore
from quantumquill.devstack.redis import RedisServer
from quantumquill.devstack.stack import REPO_ROOT
from tests.conftest import ALL_DATABASES, child_env
from tests.stateless.conftest import PASSWORD, session_cache_key

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


def _log_in_with_database_sessions(make_user: Any, user_id: int) -> str:
    """Log a user in on a server still using database sessions; returns their session key."""
    make_user(user_id, f"db{user_id}", password=PASSWORD)
    with override_settings(SESSION_ENGINE="django.contrib.sessions.backends.db"):
        old_server = Client()
        response = old_server.post(reverse("accounts:login"), {"username": f"db{user_id}", "password": PASSWORD})
        assert response.status_code == 302
    return old_server.cookies[settings.SESSION_COOKIE_NAME].value


def _redis_engine_client(session_key: str) -> Client:
    """The same browser talking to a server on Redis sessions (a fresh handler loads the current engine)."""
    client = Client()
    client.cookies[settings.SESSION_COOKIE_NAME] = session_key
    return client


def _copy(*args: str) -> str:
    out = StringIO()
    call_command("copy_sessions_to_redis", *args, stdout=out)
    return out.getvalue()


def test_a_user_logged_in_with_database_sessions_stays_logged_in_on_redis_sessions(
    make_user: Any, session_redis: redis.Redis
) -> None:
    key = _log_in_with_database_sessions(make_user, 1700)
    row = Session.objects.get(session_key=key)
    assert _redis_engine_client(key).get(reverse("content:list")).status_code == 302  # not copied yet: logged out

    output = _copy()

    assert "1 copied" in output
    assert _redis_engine_client(key).get(reverse("content:list")).status_code == 200
    ttl = session_redis.ttl(session_cache_key(key))
    expected = (row.expire_date - timezone.now()).total_seconds()
    assert expected - 60 < ttl <= expected  # expires with the database row, not a fresh two weeks


def test_the_copy_is_written_exactly_as_djangos_cache_engine_reads_it(make_user: Any) -> None:
    from django.contrib.sessions.backends.cache import SessionStore as DjangoCacheStore

    key = _log_in_with_database_sessions(make_user, 1701)
    _copy()
    assert DjangoCacheStore(key)["_auth_user_id"] == "1701"


def test_a_rerun_copies_nothing_again_and_never_resurrects_a_logout(make_user: Any) -> None:
    keys = [_log_in_with_database_sessions(make_user, user_id) for user_id in (1702, 1703)]
    assert "2 copied" in _copy()
    browser = _redis_engine_client(keys[0])
    assert browser.post(reverse("accounts:logout")).status_code == 302
    assert Session.objects.filter(session_key=keys[0]).exists()  # the old row is still in the database

    output = _copy()

    assert "0 copied" in output and "2 copied by an earlier run" in output
    assert _redis_engine_client(keys[0]).get(reverse("content:list")).status_code == 302
    assert _redis_engine_client(keys[1]).get(reverse("content:list")).status_code == 200


def test_a_session_already_in_redis_is_kept_not_overwritten(make_user: Any) -> None:
    key = _log_in_with_database_sessions(make_user, 1704)
    newer = {"_auth_user_id": "1704", "note": "written by a Redis-engine server"}
    caches[settings.SESSION_CACHE_ALIAS].set(f"django.contrib.sessions.cache{key}", newer, 3600)

    output = _copy()

    assert "1 already in Redis" in output
    assert SessionStore(key)["note"] == "written by a Redis-engine server"


def test_a_dry_run_counts_but_writes_nothing(make_user: Any, session_redis: redis.Redis) -> None:
    key = _log_in_with_database_sessions(make_user, 1705)
    keys_before = set(session_redis.keys("*"))  # the login indexed its session under the user (accounts.sessions)
    output = _copy("--dry-run")
    assert "Dry run" in output and "1 would be copied" in output
    assert not session_redis.exists(session_cache_key(key))
    assert set(session_redis.keys("*")) == keys_before


def test_expired_and_unreadable_sessions_are_skipped_and_reported(make_user: Any, session_redis: redis.Redis) -> None:
    _log_in_with_database_sessions(make_user, 1706)
    Session.objects.create(
        session_key="forgedsessionkey0123456789abcdef",
        session_data="not-a-signed-value",
        expire_date=timezone.now() + timedelta(days=1),
    )
    Session.objects.create(
        session_key="expiredsessionkey0123456789abcde",
        session_data=DatabaseSessionStore().encode({"_auth_user_id": "1706"}),
        expire_date=timezone.now() - timedelta(seconds=5),
    )

    output = _copy()

    assert "1 copied" in output and "1 unreadable" in output
    assert "2/2 sessions" in output  # the expired row is not even counted as valid
    assert not session_redis.exists(session_cache_key("forgedsessionkey0123456789abcdef"))
    assert not session_redis.exists(session_cache_key("expiredsessionkey0123456789abcde"))


@pytest.mark.slow
def test_progress_shows_rate_and_eta_per_batch(make_user: Any) -> None:
    for user_id in (1707, 1708, 1709):
        _log_in_with_database_sessions(make_user, user_id)
    output = _copy("--batch-size", "1")
    progress = [line for line in output.splitlines() if "/s" in line and "ETA" in line]
    assert [line.split()[0] for line in progress] == ["1/3", "2/3", "3/3"]


@pytest.mark.slow
def test_an_unreachable_store_fails_the_command_with_the_fix(make_user: Any, session_redis_server: RedisServer) -> None:
    _log_in_with_database_sessions(make_user, 1710)
    session_redis_server.stop()
    with pytest.raises(CommandError, match="SESSION_REDIS_URL"):
        _copy()


def test_a_bad_batch_size_is_refused() -> None:
    with pytest.raises(CommandError, match="--batch-size"):
        _copy("--batch-size", "0")


@pytest.mark.slow
@pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
def test_sigterm_stops_after_the_current_batch_with_a_summary_and_a_failing_exit() -> None:
    encoded = DatabaseSessionStore().encode({"_auth_user_id": "1"})
    expires = timezone.now() + timedelta(days=1)
    Session.objects.bulk_create(
        Session(session_key=f"bulk{n:028d}", session_data=encoded, expire_date=expires) for n in range(3000)
    )
    command = subprocess.Popen(
        [sys.executable, "manage.py", "copy_sessions_to_redis", "--batch-size", "1"],
        cwd=REPO_ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert command.stdout is not None
    while "/3,000 sessions" not in command.stdout.readline():  # the first progress line
        pass
    command.send_signal(signal.SIGTERM)
    out, err = command.communicate(timeout=60)

    assert command.returncode != 0
    assert "Stopped by SIGTERM" in err
    copied = int(re.search(r"([\d,]+) copied\n", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert 0 < copied < 3000
