"""The fence: the database itself refuses writes to a frozen or moved range, and replication passes it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from django.db import DatabaseError, connections

from apps.content.models import Generation
from apps.content.services import generation_create
from migrations_tooling import fence
from migrations_tooling.schema import sharded_tables
from shardrouter.control import conninfo_for
from shardrouter.writes import FROZEN_SQLSTATE, MOVED_SQLSTATE, MovedTo, fence_sqlstate, moved_to
from tests.conftest import ALL_DATABASES
from tests.moves.support import latest_move, on_db, shardmove, wait_for_phase
from tests.support import wait_until

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)


def connect(alias: str) -> psycopg.Connection:
    return psycopg.connect(conninfo_for(alias), autocommit=True)


@contextmanager
def fenced(alias: str, move_id: int, lo: int, hi: int) -> Iterator[psycopg.Connection]:
    """A tracking fence on [lo, hi) of ``alias``, removed afterwards whatever the test did."""
    with connect(alias) as conn:
        fence.install(conn, sharded_tables(), 5)
        fence.put(conn, move_id, lo, hi, "tracking")
        try:
            yield conn
        finally:
            fence.remove(conn, move_id)


@contextmanager
def counting_refusals(alias: str) -> Iterator[Counter[str]]:
    """Count the writes ``alias`` refused with a fence error, as seen by this thread's Django connection."""
    refused: Counter[str] = Counter()

    def observe(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        try:
            return execute(sql, params, many, context)
        except DatabaseError as exc:
            code = fence_sqlstate(exc)
            if code is not None:
                refused[code] += 1
            raise

    with connections[alias].execute_wrapper(observe):
        yield refused


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


@pytest.mark.slow
def test_a_freeze_refuses_writes_until_it_expires_and_then_lets_them_through_and_logs_them() -> None:
    tables = sharded_tables()
    with fenced("shard2", 99, 1000, 2000) as conn:
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


def test_writes_through_the_services_are_held_during_a_freeze_and_succeed_after_it() -> None:
    with fenced("shard2", 98, 1000, 2000) as conn:
        fence.freeze(conn, 98, sharded_tables(), max_freeze=0.3, lock_timeout=1)
        with counting_refusals("shard2") as refused:
            generation = generation_create(user_id=1500, prompt="held, not failed")
        assert refused[FROZEN_SQLSTATE] >= 1, "the write was never refused, so it was never held by the freeze"
        assert Generation.objects.for_user(1500).get(id=generation.id).prompt == "held, not failed"


def test_a_repeatable_read_writer_whose_snapshot_predates_a_freeze_fails_instead_of_writing_past_it() -> None:
    existing = insert_directly("shard2", 1500)
    with fenced("shard2", 97, 1000, 2000) as conn:
        with psycopg.connect(conninfo_for("shard2")) as writer:
            writer.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            writer.execute("SELECT count(*) FROM content_generation")  # the snapshot is taken here
            fence.freeze(conn, 97, sharded_tables(), max_freeze=5, lock_timeout=1)
            with pytest.raises(psycopg.Error) as refused:
                writer.execute("UPDATE content_generation SET prompt = 'late' WHERE id = %s", [existing.id])
            assert refused.value.sqlstate == "40001"
            writer.rollback()
