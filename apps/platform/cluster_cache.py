"""A Django cache on a Redis Cluster: django-redis's backend and key/value format, redis-py's ``RedisCluster``.

django-redis speaks to one server (or a Sentinel-managed one); redis-py's
``RedisCluster`` knows the slot map, follows MOVED and ASK redirects (a
resharding in progress) and re-reads the map when a node fails (a failover).
``RedisClusterCache`` is django-redis's ``RedisCache`` with a client that hands
out one ``RedisCluster`` instead of a plain connection; keys, serializer,
compressor, timeouts and ``IGNORE_EXCEPTIONS`` behave exactly as with one Redis,
so ``django.contrib.sessions.backends.cache`` (and our loud session engine on
top of it) works unchanged.

Keys carry no hash tag, so sessions spread over every master by the CRC16 of
their full key. The only multi-key operation that must be atomic (the copy
marker written with a copied session, ``apps.platform.services``) hash-tags the
marker with the session's key on purpose, so both land in one slot.

Errors: a slot with no master or no reachable node at all (``RedisClusterException``
in redis-py) is raised as :class:`ClusterUnavailable`, a ``ConnectionError``, so
that it is handled like any other outage: a 503 for the sessions, and ignored
where a cache sets ``IGNORE_EXCEPTIONS``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django_redis.cache import RedisCache
from django_redis.client import DefaultClient
from django_redis.exceptions import ConnectionInterrupted
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry

from quantumquill.redis_cluster_env import CLUSTER_BACKEND

CLIENT_CLASS = "apps.platform.cluster_cache.RedisClusterClient"


class ClusterUnavailable(RedisConnectionError):
    """No node could answer for a key: its slot has no master, or no node answers at all."""


class _Cluster(RedisCluster):
    """``RedisCluster`` raising :class:`ClusterUnavailable` where redis-py raises a bare ``RedisClusterException``."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute_command(*args, **kwargs)
        except RedisClusterException as exc:
            raise ClusterUnavailable(f"Redis Cluster cannot serve {args[0]}: {exc}") from exc


def startup_nodes(location: Collection[str]) -> list[ClusterNode]:
    """``["host:port", ...]`` into redis-py's startup nodes."""
    nodes = []
    for item in location:
        host, _sep, port = str(item).strip().rpartition(":")
        nodes.append(ClusterNode(host.removeprefix("[").removesuffix("]"), int(port)))
    return nodes


def connect_cluster(location: Collection[str], options: dict[str, Any]) -> RedisCluster:
    """A ``RedisCluster`` for a cache's LOCATION and OPTIONS; it reads the slot map now, so it fails now.

    Raises ``ClusterUnavailable`` when no listed node answers, and
    ``ImproperlyConfigured`` when a node answers but is not in cluster mode.
    """
    kwargs: dict[str, Any] = {
        "socket_connect_timeout": options.get("SOCKET_CONNECT_TIMEOUT", 1.0),
        "socket_timeout": options.get("SOCKET_TIMEOUT", 1.0),
        "password": options.get("PASSWORD"),
        "ssl": bool(options.get("CLUSTER_TLS", False)),
    }
    try:
        cluster = _Cluster(
            startup_nodes=startup_nodes(location),
            # Retries re-read the slot map first; no backoff, so a failover costs a 503, not a stuck thread.
            retry=Retry(NoBackoff(), int(options.get("CLUSTER_RETRIES", 2))),
            # A slot without a master affects the keys in it only, never the whole store.
            require_full_coverage=False,
            **kwargs,
        )
    except RedisClusterException as exc:
        if "Cluster mode is not enabled" in str(exc):
            raise ImproperlyConfigured(
                f"The Redis at {', '.join(location)} is not a cluster node (cluster mode is disabled). For a single "
                "Redis set the *_REDIS_URL variable instead of *_CLUSTER_NODES."
            ) from exc
        raise ClusterUnavailable(
            f"None of the cluster nodes {', '.join(location)} answered ({exc}). Check the *_CLUSTER_NODES variable "
            "and that the cluster is up."
        ) from exc
    cluster.RedisClusterRequestTTL = int(options.get("CLUSTER_MAX_REDIRECTS", 16))
    return cluster


class RedisClusterClient(DefaultClient):
    """django-redis's client with one ``RedisCluster`` (per cache instance) in place of per-server connections."""

    def __init__(self, server: Any, params: dict[str, Any], backend: Any) -> None:
        super().__init__(server, params, backend)
        if any("://" in str(item) for item in self._server):
            raise ImproperlyConfigured(
                f"A Redis Cluster cache lists its nodes as HOST:PORT, got {self._server!r}; "
                "set *_CLUSTER_NODES=host:port,host:port."
            )
        self._cluster: RedisCluster | None = None

    def get_next_client_index(self, write: bool = True, tried: list[int] | None = None) -> int:
        return 0  # one cluster client; it picks the master for each key itself

    def get_client(self, write: bool = True, tried: list[int] | None = None) -> Any:
        if self._cluster is None:
            self._cluster = connect_cluster(self._server, self._options)
        return self._cluster

    def get_client_with_index(self, write: bool = True, tried: list[int] | None = None) -> tuple[Any, int]:
        return self.get_client(write=write), 0

    def connect(self, index: int = 0) -> Any:
        return connect_cluster(self._server, self._options)

    def disconnect(self, index: int = 0, client: Any = None) -> None:
        target = client if client is not None else self._cluster
        if target is not None:
            target.close()

    def do_close_clients(self) -> None:
        self.disconnect()
        self._cluster = None

    def get_many(self, keys: Collection[str], version: int | None = None, client: Any = None) -> dict[str, Any]:
        """MGET across slots is refused by a cluster; redis-py splits it per slot (not atomic, as Django allows)."""
        if client is None:
            client = self.get_client(write=False)
        if not keys:
            return {}
        map_keys = {self.make_key(k, version=version): k for k in keys}
        try:
            results = client.mget_nonatomic(list(map_keys))
        except (RedisError, RedisClusterException) as exc:
            raise ConnectionInterrupted(connection=client) from exc
        return {
            map_keys[key]: self.decode(value) for key, value in zip(map_keys, results, strict=True) if value is not None
        }


class RedisClusterCache(RedisCache):
    """``django_redis.cache.RedisCache`` whose client is :class:`RedisClusterClient`; LOCATION lists ``host:port``."""

    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        options = dict(params.get("OPTIONS", {}))
        options["CLIENT_CLASS"] = CLIENT_CLASS
        super().__init__(server, {**params, "OPTIONS": options})


CLUSTER_FIX_HINT = (
    "List reachable nodes of a Redis Cluster in SESSION_REDIS_CLUSTER_NODES / REDIS_CLUSTER_NODES (host:port, any "
    "nodes of the cluster), or use SESSION_REDIS_URL / REDIS_URL for a single Redis."
)


def cluster_configuration_errors(caches_setting: dict[str, dict[str, Any]]) -> dict[str, str]:
    """For every cache on a Redis Cluster that cannot start: alias -> what is wrong (unreachable, not a cluster)."""
    problems: dict[str, str] = {}
    for alias, config in caches_setting.items():
        if config.get("BACKEND") != CLUSTER_BACKEND:
            continue
        location = config.get("LOCATION", [])
        nodes = [location] if isinstance(location, str) else list(location)
        try:
            connect_cluster(nodes, dict(config.get("OPTIONS", {}))).close()
        except (ImproperlyConfigured, RedisError) as exc:
            problems[alias] = f"Cache {alias!r} cannot use its Redis Cluster: {exc}"
    return problems


def verify_cluster_caches(caches_setting: dict[str, dict[str, Any]]) -> None:
    """Refuse to start an app server whose Redis Cluster settings cannot work (called from the WSGI module)."""
    problems = cluster_configuration_errors(caches_setting)
    if problems:
        raise ImproperlyConfigured(" ".join(problems.values()) + " " + CLUSTER_FIX_HINT)
