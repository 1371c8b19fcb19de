"""The fence: the database itself refuses writes to a frozen or moved range, and replication passes it."""

from __future__ import annotations

import psycopg
import pytest

from apps.content.models import Generation
from apps.content.services import generation_create
from migrations_tooling import fence
from migrations_tooling.schema import sharded_tables
from shardrouter.control import conninfo_for
from tests.conftest import ALL_DATABASES
from tests.moves.support import latest_move, on_db, shardmove, wait_for_phase, wait_until

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)

INSERT = (
    "INSERT INTO content_generation (id, user_id, request_id, prompt, max_tokens, temperature, top_p, stop, status, "
    "output, error, finish_reason, prompt_tokens, completion_tokens, created_at, updated_at) VALUES "
    "(%s, %s, gen_random_uuid(), 'direct', 1, 1, 1, '[]', 'queued', '', '', '', 0, 0, now(), now())"
)


def connect(alias: str) -> psycopg.Connection:
    return psycopg.connect(conninfo_for(alias), autocommit=True)


def test_the_target_refuses_direct_writes_to_the_moving_range_while_replication_fills_it() -> None:
    generation_create(user_id=10, prompt="before the move")
    shardmove("start", "0", "500", "--to", "shard3")
    move = latest_move()
    wait_for_phase(move.id, "catching_up")

    with connect("shard3") as target, pytest.raises(psycopg.Error) as refused:
        target.execute(INSERT, [1, 10])
    assert refused.value.sqlstate == "QQ002"
    assert refused.value.diag.message_detail == "alias=shard1 lo=0 hi=500"

    # The apply worker is not stopped by the fence: a write on the source arrives on the target.
    created = generation_create(user_id=10, prompt="during the move")
    wait_until(
        lambda: on_db("shard3", "SELECT prompt FROM content_generation WHERE id = %s", [created.id]),
        timeout=10,
        what="the new row to replicate into the fenced target",
    )
    # Users outside the range are not affected on either side.
    with connect("shard3") as target:
        target.execute(INSERT, [2, 700])


def test_a_freeze_refuses_writes_until_it_expires_and_then_lets_them_through_and_logs_them() -> None:
    tables = sharded_tables()
    with connect("shard2") as conn:
        fence.install(conn, tables, 5)
        fence.put(conn, 99, 1000, 2000, "tracking")
        expires = fence.freeze(conn, 99, tables, max_freeze=0.5, lock_timeout=1)

        with connect("shard2") as writer:
            with pytest.raises(psycopg.Error) as refused:
                writer.execute(INSERT, [3, 1500])
            assert refused.value.sqlstate == "QQ001"
            writer.execute(INSERT, [4, 2500])  # outside the frozen range

            wait_until(
                lambda: conn.execute("SELECT clock_timestamp() > %s", [expires]).fetchone()[0],
                timeout=10,
                what="the freeze to expire",
            )
            writer.execute(INSERT, [5, 1500])  # nobody lifted the freeze: it expired by itself
        assert fence.changed_keys(conn, 99, None) == {"content_generation": {5}}
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
    with connect("shard2") as conn:
        fence.install(conn, tables, 5)
        fence.put(conn, 97, 1000, 2000, "tracking")
        with psycopg.connect(conninfo_for("shard2")) as writer:
            writer.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            writer.execute("SELECT count(*) FROM content_generation")  # the snapshot is taken here
            fence.freeze(conn, 97, tables, max_freeze=5, lock_timeout=1)
            with pytest.raises(psycopg.Error) as refused:
                writer.execute(INSERT, [7, 1500])
            assert refused.value.sqlstate == "40001"
            writer.rollback()
        fence.remove(conn, 97)
