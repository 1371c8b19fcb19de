"""Every mistake an operator can make is refused with a message that says what to do, and nothing changes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from migrations_tooling.models import MoveRange
from quantumquill.devstack.postgres import PostgresServer
from quantumquill.devstack.stack import INITDB_TEMPLATES, free_port
from shardrouter.keyspace import KEYSPACE_END, ShardRange
from shardrouter.mapstore import load_map_from_database
from tests.conftest import ALL_DATABASES, child_env, database_url, write_map
from tests.moves.support import REPO_ROOT, latest_move, on_db, shardmove, wait_for_phase

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)


def nothing_changed(map_version: int) -> None:
    assert load_map_from_database().version == map_version
    assert MoveRange.objects.count() == 0
    for alias in ("default", "shard1", "shard2", "shard3"):
        assert on_db(alias, "SELECT count(*) FROM pg_publication") == [(0,)]
        assert on_db(alias, "SELECT count(*) FROM pg_replication_slots WHERE database = current_database()") == [(0,)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["500", "500", "--to", "shard3"], "is empty: HI must be greater than LO"),
        (["700", "20", "--to", "shard3"], "is empty"),
        (["ten", "20", "--to", "shard3"], "is not a user ID"),
        (["0", "500", "--to", "shard9"], "Unknown database alias 'shard9'"),
        (["0", "500", "--to", "shard1"], "already on shard1: source and target are the same database"),
        (["500", "1500", "--to", "shard3"], "spans several source databases"),
    ],
)
@pytest.mark.parametrize("command", ["plan", "start"])
def test_a_bad_range_or_alias_is_refused_before_anything_changes(command: str, args: list[str], message: str) -> None:
    version = load_map_from_database().version
    with pytest.raises(CommandError, match=message):
        shardmove(command, *args)
    nothing_changed(version)


def test_a_range_spanning_two_sources_is_refused_with_the_moves_to_run_instead() -> None:
    with pytest.raises(CommandError) as refused:
        shardmove("plan", "500", "1500", "--to", "shard3")
    assert "[500, 1000) is on shard1" in str(refused.value)
    assert "`shardmove start 500 1000 --to shard3` and `shardmove start 1000 1500 --to shard3`" in str(refused.value)


def test_a_second_move_over_a_moving_range_and_map_edits_of_it_are_refused() -> None:
    shardmove("start", "0", "500", "--to", "shard3")
    move = latest_move()
    version = load_map_from_database().version
    for args in (["250", "750", "--to", "shard3"], ["0", "500", "--to", "shard2"], ["0", "10", "--to", "shard2"]):
        with pytest.raises(CommandError, match=f"already moving \\(move {move.id}"):
            shardmove("start", *args)
    with pytest.raises(CommandError, match=f"shardmove complete {move.id}"):
        call_command("shardmap", "assign", "100", "200", "shard2", "--apply")
    assert load_map_from_database().version == version
    assert MoveRange.objects.count() == 1
    # The same move again is not a second move: it resumes (here: there is nothing left to do).
    assert "was started already" in shardmove("start", "0", "500", "--to", "shard3")


def test_steps_out_of_order_are_refused_with_the_step_to_take_first() -> None:
    shardmove("start", "0", "500", "--to", "shard3")
    move = latest_move()
    wait_for_phase(move.id, "catching_up")
    with pytest.raises(CommandError, match=f"switch reads first \\(`shardmove switch-reads {move.id}`\\)"):
        shardmove("switch-writes", str(move.id))
    with pytest.raises(CommandError, match=f"`shardmove switch-reads {move.id}` and `shardmove switch-writes"):
        shardmove("complete", str(move.id))
    with pytest.raises(CommandError, match="nothing to roll back"):
        shardmove("rollback", str(move.id))
    with pytest.raises(CommandError, match="There is no move '999999'"):
        shardmove("status", "999999")
    assert latest_move().phase == "catching_up"
    assert load_map_from_database().ranges[0].read_alias == "shard1"


@pytest.mark.parametrize("rows", ["0", "-5"])
def test_verify_refuses_chunks_without_rows(rows: str) -> None:
    with pytest.raises(CommandError, match=f"--chunk-rows must be at least 1 \\(got {rows}\\)"):
        shardmove("verify", "999999", "--chunk-rows", rows)


def test_a_move_from_a_monolith_without_a_move_id_uses_the_only_move_in_progress() -> None:
    write_map([ShardRange(0, KEYSPACE_END, "default")])
    with pytest.raises(CommandError, match="No move is in progress"):
        shardmove("switch-reads")
    shardmove("start", "0", "1000", "--to", "shard1")
    wait_for_phase(latest_move().id, "catching_up")
    assert "Reads of [0, 1000) go to shard1" in shardmove("switch-reads")


@pytest.fixture
def server_without_logical_wal() -> Iterator[str]:
    """A fourth PostgreSQL server with wal_level=replica, for one test."""
    base = Path(os.environ["QQ_DEVSTACK_STATE"]).parent
    server = PostgresServer("pg-replica-wal", base / "pg-replica-wal", free_port())
    server.init(durable=False, template_root=INITDB_TEMPLATES)  # a copy of the stack's initdb, not a fresh one
    with (server.pg_dir / "postgresql.conf").open("a") as conf:
        conf.write("wal_level = replica\n")
    server.start()
    server.ensure_database("qq_plain")
    try:
        yield server.url("qq_plain")
    finally:
        server.stop(mode="immediate")


def plan_in_child(extra_shard: str) -> subprocess.CompletedProcess[str]:
    env = child_env()
    env["SHARD_DATABASE_URLS"] = env["SHARD_DATABASE_URLS"] + "," + extra_shard
    return subprocess.run(
        [sys.executable, "manage.py", "shardmove", "plan", "0", "500", "--to", "shard4"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_a_server_without_logical_wal_level_is_refused_naming_the_setting(server_without_logical_wal: str) -> None:
    result = plan_in_child(f"shard4={server_without_logical_wal}")
    assert result.returncode != 0
    assert "wal_level=replica" in result.stderr
    assert "ALTER SYSTEM SET wal_level = logical" in result.stderr


@pytest.mark.slow
def test_a_role_without_replication_rights_is_refused_with_the_grants_to_run() -> None:
    on_db("shard3", "DROP ROLE IF EXISTS qq_limited")
    on_db("shard3", "CREATE ROLE qq_limited LOGIN NOSUPERUSER NOREPLICATION")
    try:
        limited = database_url("shard3").replace("postgres://postgres@", "postgres://qq_limited@")
        result = plan_in_child(f"shard4={limited}")
        assert result.returncode != 0
        assert "ALTER ROLE qq_limited REPLICATION" in result.stderr
        assert "GRANT pg_create_subscription TO qq_limited" in result.stderr
        assert "ALTER TABLE content_generation OWNER TO qq_limited" in result.stderr
    finally:
        on_db("shard3", "DROP ROLE IF EXISTS qq_limited")
