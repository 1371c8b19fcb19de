"""shardrouter's settings, read from ``settings.SHARDROUTER`` with documented defaults."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class ShardRouterSettings:
    control_database: str
    sharded_apps: frozenset[str]
    shard_databases: frozenset[str]
    refresh_interval: float
    write_buffer_seconds: float
    read_your_writes_seconds: float
    pin_cache: str
    id_lease_seconds: int


def get_settings() -> ShardRouterSettings:
    raw = getattr(settings, "SHARDROUTER", {})
    control = raw.get("CONTROL_DATABASE", "default")
    # Every configured alias may hold sharded rows unless told otherwise; the control
    # database is one of them, which is what makes monolith mode a plain shard map.
    shard_dbs = raw.get("SHARD_DATABASES") or list(settings.DATABASES)
    return ShardRouterSettings(
        control_database=control,
        sharded_apps=frozenset(raw.get("SHARDED_APPS", [])),
        shard_databases=frozenset(shard_dbs),
        refresh_interval=float(raw.get("REFRESH_INTERVAL", 1.0)),
        write_buffer_seconds=float(raw.get("WRITE_BUFFER_SECONDS", 5.0)),
        read_your_writes_seconds=float(raw.get("READ_YOUR_WRITES_SECONDS", 5.0)),
        pin_cache=raw.get("PIN_CACHE", "default"),
        id_lease_seconds=int(raw.get("ID_LEASE_SECONDS", 300)),
    )
