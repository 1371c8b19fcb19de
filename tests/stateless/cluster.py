"""Helpers for the Redis Cluster tests (the fixtures ``redis_cluster`` and ``cluster_sessions`` are in conftest)."""

from __future__ import annotations

from redis.cluster import key_slot

from quantumquill.devstack.redis_cluster import RedisClusterStack
from tests.stateless.conftest import session_cache_key


def cluster_env(stack: RedisClusterStack, **extra: str) -> dict[str, str]:
    """Settings that put the sessions on ``stack`` (and not on the test stack's single session Redis)."""
    return {"SESSION_REDIS_URL": "", "SESSION_REDIS_CLUSTER_NODES": stack.startup_nodes, **extra}


def master_port_of_session(stack: RedisClusterStack, session_key: str) -> int:
    """The port of the master that owns this session's slot now."""
    return stack.master_for_slot(key_slot(session_cache_key(session_key).encode())).port
