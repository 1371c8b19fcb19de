"""The move engine's session-bound work must never go through a transaction pooler: checks and the probe."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from migrations_tooling.direct import PooledConnectionRefused, check_direct_connections
from migrations_tooling.pgconn import connect
from quantumquill.devstack.pgbouncer import PgBouncer
from tests.conftest import ALL_DATABASES

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


def engine_settings(**changes: Any) -> dict[str, Any]:
    return {**settings.SHARDMOVE, **changes}


def test_a_direct_setting_that_leads_to_pgbouncer_is_refused_when_the_engine_connects(
    pgbouncers: dict[str, PgBouncer], settings: Any
) -> None:
    direct = dict(settings.SHARDMOVE["DIRECT_CONNECTIONS"])
    direct["shard2"] = {"HOST": "127.0.0.1", "PORT": str(pgbouncers["pg2"].port)}
    settings.SHARDMOVE = engine_settings(DIRECT_CONNECTIONS=direct)

    with pytest.raises(PooledConnectionRefused, match="a pooler such as PgBouncer is in between"):
        connect("shard2")
    with pytest.raises(SystemCheckError, match=r"migrations_tooling\.E012"):
        call_command("check", "--database", "shard2")
    connect("shard1").close()  # the others still reach their servers


def test_the_system_check_refuses_a_transaction_pooler_without_direct_connections(settings: Any) -> None:
    settings.SHARDMOVE = engine_settings(DIRECT_CONNECTIONS={})
    errors = check_direct_connections()
    assert {e.id for e in errors} == {"migrations_tooling.E010"}
    assert len(errors) == len(settings.DATABASES)
    with pytest.raises(SystemCheckError, match="has no direct connection for the move engine"):
        call_command("check")


def test_the_system_check_refuses_a_direct_connection_that_is_the_pooler_itself(settings: Any) -> None:
    pooled = {alias: {"HOST": cfg["HOST"], "PORT": cfg["PORT"]} for alias, cfg in settings.DATABASES.items()}
    settings.SHARDMOVE = engine_settings(DIRECT_CONNECTIONS=pooled)
    assert {e.id for e in check_direct_connections()} == {"migrations_tooling.E011"}


def test_without_a_transaction_pooler_the_direct_settings_are_optional(settings: Any) -> None:
    settings.SHARDMOVE = engine_settings(REQUIRE_DIRECT_CONNECTIONS=False, DIRECT_CONNECTIONS={})
    assert check_direct_connections() == []


def test_the_check_passes_with_the_servers_own_addresses() -> None:
    assert check_direct_connections() == []
    call_command("check", "--database", "default", "--database", "shard1", "--database", "shard2")
