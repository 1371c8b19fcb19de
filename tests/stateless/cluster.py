"""A real 6-node Redis Cluster for the tests, and the app's sessions cache pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings
from redis.cluster import key_slot

from quantumquill.devstack.redis_cluster import RedisClusterStack, cluster_ports
from quantumquill.redis_env import session_cache
from tests.stateless.conftest import session_cache_key


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisClusterStack]:
    """Three masters and three replicas on free loopback ports, killed after the test."""
    stack = RedisClusterStack(tmp_path / "cluster", cluster_ports())
    try:
        stack.start()
        yield stack
    finally:
        stack.kill_all()


def cluster_env(stack: RedisClusterStack, **extra: str) -> dict[str, str]:
    """Settings that put the sessions on ``stack`` (and not on the test stack's single session Redis)."""
    return {"SESSION_REDIS_URL": "", "SESSION_REDIS_CLUSTER_NODES": stack.startup_nodes, **extra}


@pytest.fixture
def cluster_sessions(redis_cluster: RedisClusterStack) -> Iterator[RedisClusterStack]:
    """The app's sessions cache on the cluster, built from the env variable exactly as settings.py builds it."""
    config = session_cache(cluster_env(redis_cluster))
    with override_settings(CACHES={**settings.CACHES, settings.SESSION_CACHE_ALIAS: config}):
        yield redis_cluster


def master_port_of_session(stack: RedisClusterStack, session_key: str) -> int:
    """The port of the master that owns this session's slot now."""
    return stack.master_for_slot(key_slot(session_cache_key(session_key).encode())).port
