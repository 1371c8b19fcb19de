"""Sentinel failover: sessions written before the primary dies are valid after the replica is promoted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.test import Client, override_settings
from django.urls import reverse

from quantumquill.redis_env import session_cache
from tests.conftest import ALL_DATABASES
from tests.stateless.conftest import PASSWORD, session_cache_key
from tests.stateless.sentinel import SentinelTopology

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES), pytest.mark.slow]


@pytest.fixture
def sentinel_topology(tmp_path: Path) -> Iterator[SentinelTopology]:
    topology = SentinelTopology(tmp_path / "sentinel")
    try:
        topology.start()
        yield topology
    finally:
        topology.stop()


@pytest.fixture
def sentinel_sessions(sentinel_topology: SentinelTopology) -> Iterator[SentinelTopology]:
    """The app's sessions cache built from the Sentinel env variables, exactly as settings.py builds it."""
    caches = {**settings.CACHES, settings.SESSION_CACHE_ALIAS: session_cache(sentinel_topology.env)}
    with override_settings(CACHES=caches):
        yield sentinel_topology


def _log_in(username: str) -> Client:
    client = Client()
    assert client.post(reverse("accounts:login"), {"username": username, "password": PASSWORD}).status_code == 302
    return client


def test_sessions_written_before_the_primary_dies_are_valid_after_the_replica_is_promoted(
    sentinel_sessions: SentinelTopology, make_user: Any
) -> None:
    topology = sentinel_sessions
    make_user(1800, "hal", password=PASSWORD)
    make_user(1801, "ida", password=PASSWORD)
    before = _log_in("hal")
    key = before.cookies[settings.SESSION_COOKIE_NAME].value
    primary = redis.Redis(port=topology.primary.port)
    assert primary.exists(session_cache_key(key)), "the session must be written to the Sentinel's primary"
    assert primary.wait(1, 5000) == 1  # the replica has it too

    topology.kill_primary()
    # Until the sentinels agree on a new primary, a signed-in user is told to retry, never logged out.
    during = before.get(reverse("content:list"))
    assert during.status_code == 503

    topology.wait_for_promotion()

    assert topology.master_port() == topology.replica.port
    assert before.get(reverse("content:list")).status_code == 200
    assert before.cookies[settings.SESSION_COOKIE_NAME].value == key
    after = _log_in("ida")
    assert after.get(reverse("content:list")).status_code == 200
    new_key = after.cookies[settings.SESSION_COOKIE_NAME].value
    assert redis.Redis(port=topology.replica.port).exists(session_cache_key(new_key))
