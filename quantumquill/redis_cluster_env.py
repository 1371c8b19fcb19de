"""Redis Cluster settings read from the environment, for the session store and for the general cache.

A store is configured in exactly one form: a URL, Sentinels (sessions only) or
cluster nodes. ``<PREFIX>_CLUSTER_NODES`` lists some of the cluster's nodes
(any node will do: the client asks it for the whole slot map), and the rest
are explicit knobs with defaults chosen for a session store:

- ``<PREFIX>_TIMEOUT``: connect and command timeout per node, seconds;
- ``<PREFIX>_CLUSTER_RETRIES``: how many times a command is tried again after a
  node stopped answering, the cluster said CLUSTERDOWN or a slot had no
  master, each time after re-reading the slot map (a failover moves slots to a
  promoted replica). Retries do not wait: past them the request answers 503
  with Retry-After, rather than holding a web thread through the failover;
- ``<PREFIX>_CLUSTER_MAX_REDIRECTS``: how many MOVED/ASK redirects one command
  may follow (resharding moves a key while it is being read or written);
- ``<PREFIX>_PASSWORD`` and ``<PREFIX>_CLUSTER_TLS``: for managed clusters.

Reads always go to masters: a replica lagging behind a login would answer "no
session", which is a logout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from quantumquill.env import env_bool, env_float, env_int, env_str

CLUSTER_BACKEND = "apps.platform.cluster_cache.RedisClusterCache"
CLUSTER_NODES_FORM = "a comma-separated list of HOST:PORT of cluster nodes such as 10.0.0.5:6379,10.0.0.6:6379"
DEFAULT_RETRIES = 2
DEFAULT_MAX_REDIRECTS = 16  # redis-py's own default


def parse_cluster_nodes(raw: str, *, variable: str) -> list[str]:
    """``host:port,host:port`` into ``["host:port", ...]`` (``[::1]:7000`` for IPv6), each checked."""
    nodes: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        if "://" in item:
            raise ImproperlyConfigured(
                f"{variable} item {item!r} is a URL; list the nodes as HOST:PORT. Expected {CLUSTER_NODES_FORM}."
            )
        host, sep, port_text = item.rpartition(":")
        host = host.strip().removeprefix("[").removesuffix("]")
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ImproperlyConfigured(f"{variable} item {item!r} is not HOST:PORT; expected {CLUSTER_NODES_FORM}.")
        nodes.append(f"{host}:{int(port_text)}")
    if not nodes:
        raise ImproperlyConfigured(f"{variable} lists no node; expected {CLUSTER_NODES_FORM}.")
    return nodes


def cluster_cache(
    environ: Mapping[str, str], *, prefix: str, default_timeout: float, ignore_exceptions: bool | None
) -> dict[str, Any] | None:
    """The ``CACHES`` entry for ``<prefix>_CLUSTER_NODES``, or None when that variable is not set.

    ``ignore_exceptions`` False makes every cluster error reach the caller (the
    session store needs that); None leaves django-redis's global default.
    """
    raw = (env_str(f"{prefix}_CLUSTER_NODES", "", environ=environ) or "").strip()
    if not raw:
        return None
    nodes = parse_cluster_nodes(raw, variable=f"{prefix}_CLUSTER_NODES")
    timeout = env_float(f"{prefix}_TIMEOUT", default_timeout, minimum=0.05, maximum=30, environ=environ)
    options: dict[str, Any] = {
        "SOCKET_CONNECT_TIMEOUT": timeout,
        "SOCKET_TIMEOUT": timeout,
        "CLUSTER_RETRIES": env_int(
            f"{prefix}_CLUSTER_RETRIES", DEFAULT_RETRIES, minimum=0, maximum=20, environ=environ
        ),
        "CLUSTER_MAX_REDIRECTS": env_int(
            f"{prefix}_CLUSTER_MAX_REDIRECTS", DEFAULT_MAX_REDIRECTS, minimum=1, maximum=100, environ=environ
        ),
        "CLUSTER_TLS": env_bool(f"{prefix}_CLUSTER_TLS", False, environ=environ),
    }
    if ignore_exceptions is not None:
        options["IGNORE_EXCEPTIONS"] = ignore_exceptions
    password = env_str(f"{prefix}_PASSWORD", "", environ=environ)
    if password:
        options["PASSWORD"] = password
    return {
        "BACKEND": CLUSTER_BACKEND,
        "LOCATION": nodes,
        "KEY_PREFIX": "qq",
        "OPTIONS": options,
    }


def require_one_form(environ: Mapping[str, str], *, variables: tuple[str, ...], store: str) -> None:
    """Refuse a store configured in more than one form (URL, Sentinels, cluster nodes)."""
    present = [name for name in variables if (env_str(name, "", environ=environ) or "").strip()]
    if len(present) > 1:
        raise ImproperlyConfigured(
            f"{' and '.join(present)} are set together for the {store}; set exactly one of {', '.join(variables)} "
            "(a single Redis, Sentinels, or the nodes of a Redis Cluster)."
        )
