"""The fence: the database itself refuses writes to a frozen or moved range, and replication passes it."""

from __future__ import annotations

import psycopg
import pytest
from django.db import DatabaseError

from apps.content.models import Generation
from apps.content.services import generation_create
from migrations_tooling import fence
from migrations_tooling.schema import sharded_tables
from shardrouter.control import conninfo_for
from shardrouter.writes import FROZEN_SQLSTATE, MOVED_SQLSTATE, MovedTo, fence_sqlstate, moved_to
from tests.conftest import ALL_DATABASES
from tests.moves.support import latest_move, on_db, shardmove, wait_for_phase, wait_until

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)


def connect(alias: str) -> psycopg.Connection:
    return psycopg.connect(conninfo_for(alias), autocommit=True)


def insert_directly(alias: str, user_id: int) -> Generation:
    """A write that bypasses the router and run_sharded_write: only the database's fence can stop it."""
    return Generation.objects.using(alias).create(user_id=user_id, prompt="direct")


def test_the_target_refuses_direct_writes_to_the_moving_range_while_replication_fills_it() -> None:
    generation_create(user_id=10, prompt="before the move")
    shardmove("start", "0", "500", "--to", "shard3")
    move = latest_move()
    wait_for_phase(move.id, "catching_up")

    with pytest.raises(DatabaseError) as refused:
        insert_directly("shard3", 10)
    assert fence_sqlstate(refused.value) == MOVED_SQLSTATE
    assert moved_to(refused.value) == MovedTo("shard1", 0, 500)

    # The apply worker is not stopped by the fence: a write on the source arrives on the target.
    created = generation_create(user_id=10, prompt="during the move")
    wait_until(
        lambda: on_db("shard3", "SELECT prompt FROM content_generation WHERE id = %s", [created.id]),
        timeout=10,
        what="the new row to replicate into the fenced target",
    )
    # Users outside the range are not affected on either side.
    insert_directly("shard3", 700)


def test_a_freeze_refuses_writes_until_it_expires_and_then_lets_them_through_and_logs_them() -> None:
    tables = sharded_tables()
    with connect("shard2") as conn:
        fence.install(conn, tables, 5)
        fence.put(conn, 99, 1000, 2000, "tracking")
        expires = fence.freeze(conn, 99, tables, max_freeze=2, lock_timeout=1)

        with pytest.raises(DatabaseError) as refused:
            insert_directly("shard2", 1500)
        assert fence_sqlstate(refused.value) == FROZEN_SQLSTATE
        insert_directly("shard2", 2500)  # outside the frozen range

        wait_until(
            lambda: conn.execute("SELECT clock_timestamp() > %s", [expires]).fetchone()[0],
            timeout=10,
            what="the freeze to expire",
        )
        passed = insert_directly("shard2", 1500)  # nobody lifted the freeze: it expired by itself
        assert fence.changed_keys(conn, 99, None) == {"content_generation": {passed.id}}
        # A commit point after the expiry must fail: writes may already have gone to this database.
        assert not fence.commit_moved(conn, 99, tables, moved_to="shard3", lock_timeout=1)
        fence.remove(conn, 99)


def test_writes_through_the_services_are_held_during_a_freeze_and_succeed_after_it() -> None:
    tables = sharded_tables()
    with connect("shard2") as conn:
        fence.install(conn, tables, 5)
        fence.put(conn, 98, 1000, 2000, "tracking")
        fence.freeze(conn, 98, tables, max_freeze=0.3, lock_timeout=1)
        generation = generation_create(user_id=1500, prompt="held, not failed")
        assert Generation.objects.for_user(1500).get(id=generation.id).prompt == "held, not failed"
        fence.remove(conn, 98)


def test_a_repeatable_read_writer_whose_snapshot_predates_a_freeze_fails_instead_of_writing_past_it() -> None:
    tables = sharded_tables()
    existing = insert_directly("shard2", 1500)
    with connect("shard2") as conn:
        fence.install(conn, tables, 5)
        fence.put(conn, 97, 1000, 2000, "tracking")
        with psycopg.connect(conninfo_for("shard2")) as writer:
            writer.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            writer.execute("SELECT count(*) FROM content_generation")  # the snapshot is taken here
            fence.freeze(conn, 97, tables, max_freeze=5, lock_timeout=1)
            with pytest.raises(psycopg.Error) as refused:
                writer.execute("UPDATE content_generation SET prompt = 'late' WHERE id = %s", [existing.id])
            assert refused.value.sqlstate == "40001"
            writer.rollback()
        fence.remove(conn, 97)
