"""``QQ_DEVSTACK_SESSIONS=cluster make run``: the platform's sessions on an embedded 6-node Redis Cluster.

Everything else stays as ``make run`` starts it; only the sessions move from
the single ``redis-sessions`` server to three masters and three replicas under
``var/devstack/redis-cluster/`` (fixed ports 47001-47006, kept between runs).
An operator can then watch a failover: kill a master with SIGKILL and see its
users get a 503 with Retry-After for a few seconds, then carry on signed in.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

from .redis_cluster import RedisClusterStack
from .stack import Stack

SESSIONS_ENV = "QQ_DEVSTACK_SESSIONS"
SESSION_MODES = ("single", "cluster")
DEV_CLUSTER_PORTS = [47001, 47002, 47003, 47004, 47005, 47006]
DEV_NODE_TIMEOUT_MS = 2000


def session_mode(environ: Mapping[str, str]) -> str:
    """``single`` (default: one redis-server for sessions) or ``cluster``."""
    mode = (environ.get(SESSIONS_ENV) or "single").strip().lower()
    if mode not in SESSION_MODES:
        raise ImproperlyConfigured(f"{SESSIONS_ENV}={mode!r}; expected one of {', '.join(SESSION_MODES)}.")
    return mode


def session_cluster(stack: Stack) -> RedisClusterStack:
    return RedisClusterStack(
        stack.profile.data_dir / "redis-cluster", list(DEV_CLUSTER_PORTS), node_timeout_ms=DEV_NODE_TIMEOUT_MS
    )


def start_session_cluster(stack: Stack) -> tuple[RedisClusterStack, dict[str, str]]:
    """Start (assembling on first use) the embedded cluster; return it and the env that moves sessions onto it."""
    cluster = session_cluster(stack)
    cluster.start()
    masters = ", ".join(str(node.port) for node in cluster.masters())
    pid_file = cluster.node(cluster.masters()[0].port).pid_file
    print(
        f"Sessions on an embedded Redis Cluster: masters on {masters}, one replica each. Watch a failover with\n"
        f"    kill -9 $(cat {pid_file})",
        flush=True,
    )
    return cluster, {"SESSION_REDIS_URL": "", "SESSION_REDIS_CLUSTER_NODES": cluster.startup_nodes}
