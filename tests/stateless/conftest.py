"""Fixtures for stateless app servers: the real session Redis of the test stack, logged-in clients."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.cache import caches
from django.test import Client, override_settings
from django.urls import reverse

from quantumquill.devstack.redis import RedisServer
from quantumquill.devstack.redis_cluster import RedisClusterStack, cluster_ports
from quantumquill.devstack.stack import stack_from_state
from quantumquill.redis_env import session_cache

PASSWORD = "correct horse battery"


@pytest.fixture
def session_redis_server() -> Iterator[RedisServer]:
    """The test stack's session Redis; running again after the test even if the test stopped it."""
    server = stack_from_state().redis_sessions()
    yield server
    server.start()


@pytest.fixture(autouse=True)
def empty_session_store() -> Iterator[None]:
    """Each test starts with no sessions in Redis."""
    caches[settings.SESSION_CACHE_ALIAS].clear()
    yield


@pytest.fixture
def session_redis() -> redis.Redis:
    """A raw client on the session Redis, to look at exactly what the engine wrote."""
    return redis.Redis.from_url(settings.CACHES[settings.SESSION_CACHE_ALIAS]["LOCATION"])


def session_cache_key(session_key: str) -> str:
    """The Redis key Django's cache session engine uses for ``session_key`` under our settings."""
    return f"qq:1:django.contrib.sessions.cache{session_key}"


@pytest.fixture
def logged_in_client(make_user: Any) -> Client:
    make_user(1500, "dora", password=PASSWORD)
    client = Client()
    response = client.post(reverse("accounts:login"), {"username": "dora", "password": PASSWORD})
    assert response.status_code == 302, response.content[:500]
    return client


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterStack]:
    """A real Redis Cluster: three masters and three replicas on free loopback ports, killed after the test."""
    stack = RedisClusterStack(tmp_path / "cluster", cluster_ports())
    try:
        stack.start()
        yield stack
    finally:
        stack.kill_all()


@pytest.fixture
def cluster_sessions(redis_cluster: RedisClusterStack) -> Iterator[RedisClusterStack]:
    """The app's sessions cache on ``redis_cluster``, built from the env variable exactly as settings.py builds it."""
    config = session_cache({"SESSION_REDIS_CLUSTER_NODES": redis_cluster.startup_nodes})
    with override_settings(CACHES={**settings.CACHES, settings.SESSION_CACHE_ALIAS: config}):
        yield redis_cluster
