"""Database connection settings that depend on a pooler in front of the servers (docs/connections.md).

``DATABASE_POOLER=transaction`` says the URLs in ``DATABASE_URL`` and
``SHARD_DATABASE_URLS`` lead to PgBouncer in transaction mode: every server
connection serves one transaction of one client, so Django must not rely on
session state (no server-side cursors) and the move engine needs the servers'
own addresses, from ``DATABASE_DIRECT_URL`` and ``SHARD_DIRECT_DATABASE_URLS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from quantumquill.env import env_str, parse_database_url, parse_shard_urls

POOLERS = ("none", "transaction")


def database_pooler(environ: Mapping[str, str]) -> str:
    """``none`` (Django connects to the servers) or ``transaction`` (a transaction-mode pooler in between)."""
    raw = (env_str("DATABASE_POOLER", "none", environ=environ) or "none").strip().lower()
    if raw not in POOLERS:
        raise ImproperlyConfigured(
            f"DATABASE_POOLER={raw!r} is not a pooler mode; expected 'none' or 'transaction' (PgBouncer with "
            "pool_mode = transaction). Session-mode pooling needs no setting: use 'none'."
        )
    return raw


def apply_pooler(databases: dict[str, dict[str, Any]], pooler: str) -> None:
    """Adjust each DATABASES entry for the pooler: no server-side cursors behind a transaction pooler."""
    if pooler != "transaction":
        return
    for config in databases.values():
        # Named cursors (QuerySet.iterator()) outlive the transaction in autocommit mode (WITH HOLD), and the
        # next query may run on another server connection. Prepared statements are already off: Django
        # binds parameters client-side unless OPTIONS["server_side_binding"] is set.
        config["DISABLE_SERVER_SIDE_CURSORS"] = True
        if config["OPTIONS"].get("server_side_binding"):
            raise ImproperlyConfigured(
                "server_side_binding=true prepares statements on one server connection, which a transaction "
                "pooler does not keep; remove it from the database URL or set DATABASE_POOLER=none."
            )


def direct_connections(
    environ: Mapping[str, str], databases: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """The servers' own addresses for the move engine, keyed by alias (SHARDMOVE['DIRECT_CONNECTIONS'])."""
    urls: dict[str, tuple[str, str]] = {}
    control = env_str("DATABASE_DIRECT_URL", "", environ=environ) or ""
    if control:
        urls["default"] = (control, "DATABASE_DIRECT_URL")
    raw = env_str("SHARD_DIRECT_DATABASE_URLS", "", environ=environ) or ""
    for alias, url in parse_shard_urls(raw, variable="SHARD_DIRECT_DATABASE_URLS").items():
        urls[alias] = (url, f"SHARD_DIRECT_DATABASE_URLS ({alias})")
    result: dict[str, dict[str, Any]] = {}
    for alias, (url, variable) in urls.items():
        if alias not in databases:
            raise ImproperlyConfigured(
                f"{variable} names database {alias!r}, which SHARD_DATABASE_URLS does not; list the same aliases."
            )
        config = parse_database_url(url, variable=variable)
        if config["NAME"] != databases[alias]["NAME"]:
            raise ImproperlyConfigured(
                f"{variable} names database {config['NAME']!r} but the pooled URL names "
                f"{databases[alias]['NAME']!r}: the pooler must serve each database under its own name."
            )
        result[alias] = {key: config[key] for key in ("HOST", "PORT", "USER", "PASSWORD", "OPTIONS")}
    return result
