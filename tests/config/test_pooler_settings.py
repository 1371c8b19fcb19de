"""Settings for a transaction pooler (DATABASE_POOLER and the direct URLs) and the PgBouncer configuration."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from deploy.render_pgbouncer import PgBouncerConfigError, PgBouncerSettings, render_pgbouncer_ini
from quantumquill.db_env import apply_pooler, database_pooler, direct_connections
from quantumquill.devstack.pgbouncer import pooled_env, poolers_for
from quantumquill.devstack.stack import PROFILES, Stack
from quantumquill.env import parse_database_url, parse_shard_urls


def databases() -> dict[str, dict[str, object]]:
    return {
        "default": parse_database_url("postgres://app@pgbouncer0:6432/quantumquill", variable="DATABASE_URL"),
        "shard1": parse_database_url("postgres://app@pgbouncer1:6432/qq_shard1", variable="SHARD_DATABASE_URLS"),
    }


def test_transaction_pooling_turns_off_server_side_cursors() -> None:
    dbs = databases()
    apply_pooler(dbs, database_pooler({"DATABASE_POOLER": "Transaction"}))
    assert all(config["DISABLE_SERVER_SIDE_CURSORS"] is True for config in dbs.values())
    untouched = databases()
    apply_pooler(untouched, database_pooler({}))
    assert all("DISABLE_SERVER_SIDE_CURSORS" not in config for config in untouched.values())


def test_an_unknown_pooler_mode_is_refused_naming_the_choices() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"DATABASE_POOLER='session' .* expected 'none' or 'transaction'"):
        database_pooler({"DATABASE_POOLER": "session"})


def test_server_side_binding_is_refused_behind_a_transaction_pooler() -> None:
    dbs = databases()
    dbs["shard1"]["OPTIONS"] = {"server_side_binding": "true"}  # type: ignore[index]
    with pytest.raises(ImproperlyConfigured, match="server_side_binding"):
        apply_pooler(dbs, "transaction")


def test_direct_urls_give_the_move_engine_each_servers_own_address() -> None:
    env = {
        "DATABASE_DIRECT_URL": "postgres://app:s3cret@pg0:5432/quantumquill",
        "SHARD_DIRECT_DATABASE_URLS": "shard1=postgres://app@pg1:5432/qq_shard1",
    }
    direct = direct_connections(env, databases())
    assert direct["default"]["HOST"] == "pg0" and direct["default"]["PASSWORD"] == "s3cret"
    assert direct["shard1"]["HOST"] == "pg1" and direct["shard1"]["PORT"] == "5432"


def test_a_direct_url_must_name_the_same_database_as_the_pooled_one() -> None:
    with pytest.raises(ImproperlyConfigured, match="serve each database under its own name"):
        direct_connections({"DATABASE_DIRECT_URL": "postgres://app@pg0/other"}, databases())


def test_a_direct_url_for_an_unknown_alias_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="names database 'shard9'"):
        direct_connections({"SHARD_DIRECT_DATABASE_URLS": "shard9=postgres://app@pg9/qq_shard9"}, databases())


def test_the_pgbouncer_configuration_is_in_transaction_mode_with_a_bounded_wait() -> None:
    text = render_pgbouncer_ini(PgBouncerSettings(server_port=5433, databases=["qq_shard1", "qq_shard3"]))
    assert "pool_mode = transaction" in text
    assert "query_wait_timeout = 5" in text
    assert "qq_shard1 = host=127.0.0.1 port=5433 dbname=qq_shard1" in text
    assert "* =" not in text
    assert "{{" not in text


@pytest.mark.parametrize(
    "bad",
    [
        PgBouncerSettings(databases=["qq; drop"]),
        PgBouncerSettings(server_host="a b"),
        PgBouncerSettings(listen_port=70000),
        PgBouncerSettings(pool_size=0),
        PgBouncerSettings(auth_type="password"),
    ],
)
def test_values_that_would_break_the_configuration_are_refused(bad: PgBouncerSettings) -> None:
    with pytest.raises(PgBouncerConfigError):
        render_pgbouncer_ini(bad)


def test_the_embedded_poolers_stand_in_front_of_each_server_and_the_engine_keeps_the_servers() -> None:
    stack = Stack(PROFILES["dev"], ports={"pg0": 55432, "pg1": 55433, "pg2": 55434})
    env = pooled_env(stack, poolers_for(stack, fixed_ports=True))
    assert env["DATABASE_POOLER"] == "transaction"
    assert env["DATABASE_URL"] == "postgres://postgres@127.0.0.1:56432/quantumquill"
    assert env["DATABASE_DIRECT_URL"] == "postgres://postgres@127.0.0.1:55432/quantumquill"
    # shard1 and shard3 share server pg1, so they share its pooler.
    assert "shard1=postgres://postgres@127.0.0.1:56433/qq_shard1" in env["SHARD_DATABASE_URLS"]
    assert "shard3=postgres://postgres@127.0.0.1:56433/qq_shard3" in env["SHARD_DATABASE_URLS"]
    assert "shard2=postgres://postgres@127.0.0.1:55434/qq_shard2" in env["SHARD_DIRECT_DATABASE_URLS"]

    pooled = {"default": parse_database_url(env["DATABASE_URL"], variable="DATABASE_URL")}
    for alias, url in parse_shard_urls(env["SHARD_DATABASE_URLS"], variable="SHARD_DATABASE_URLS").items():
        pooled[alias] = parse_database_url(url, variable=alias)
    direct = direct_connections(env, pooled)
    assert {alias: entry["PORT"] for alias, entry in direct.items()} == {
        "default": "55432",
        "shard1": "55433",
        "shard2": "55434",
        "shard3": "55433",
    }
