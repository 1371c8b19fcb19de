"""A cut-over that cannot finish says why: an expired freeze is an expiry, a lock timeout names the transaction."""

from __future__ import annotations

import psycopg
import pytest
from django.core.management.base import CommandError

from migrations_tooling.models import MoveEvent, MoveRange
from shardrouter.control import conninfo_for
from tests.conftest import ALL_DATABASES
from tests.moves.support import Ledger, Operator, latest_move, on_db, seed, shardmove, wait_for_phase
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]

# Standard map: [0, 1000) on shard1, [1000, MAX) on shard2. The moves take [0, 500) from shard1 to shard2
# (another server, so a transaction on one does not hold up slot creation on the other).


def reads_switched_and_verified() -> MoveRange:
    seed(Ledger(), "shard1", [10, 20, 700], per_user=20)
    shardmove("start", "0", "500", "--to", "shard2")
    move = latest_move()
    wait_for_phase(move.id, "catching_up")
    shardmove("switch-reads", str(move.id))
    shardmove("verify", str(move.id))
    return move


def prompt_on(alias: str, row_id: int) -> str:
    return str(on_db(alias, "SELECT prompt FROM content_generation WHERE id = %s", [row_id])[0][0])


def test_a_freeze_that_expires_during_the_comparison_aborts_as_an_expiry_and_a_retry_succeeds() -> None:
    move = reads_switched_and_verified()
    row_id = on_db("shard1", "SELECT id FROM content_generation WHERE user_id = 10 ORDER BY id LIMIT 1")[0][0]
    operator = Operator(
        "switch-writes",
        str(move.id),
        "--max-freeze",
        "0.3",
        "--attempts",
        "1",
        pause_at="switch-writes:caught-up",
        pause_seconds=5,
    )
    operator.wait_for("paused at switch-writes:caught-up")
    expires = on_db("shard1", "SELECT expires_at FROM qq_fence WHERE move_id = %s AND state = 'frozen'", [move.id])
    assert expires, "the range is not frozen on shard1"
    wait_until(
        lambda: on_db("shard1", "SELECT clock_timestamp() > %s", [expires[0][0]])[0][0],
        timeout=10,
        what="the freeze to expire",
    )
    # The target's apply worker waits behind this lock, so a write after the expiry does not reach shard2 yet:
    # the comparison, still to come, sees the two sides differ on that row.
    holder = psycopg.connect(conninfo_for("shard2"))
    try:
        holder.execute("LOCK TABLE content_generation IN SHARE MODE")
        # The freeze has expired: the database lets this write through (and logs it), as it would a user's.
        on_db("shard1", "UPDATE content_generation SET prompt = 'written after the expiry' WHERE id = %s", [row_id])
        assert "aborted" not in operator.text, "the pause ended before the write; the machine is too slow"
        code, text = operator.finish()
        assert code != 0
        assert "expired while" in text and "differ between the two sides" not in text, text
        last_error = MoveRange.objects.get(id=move.id).last_error
        assert "expired while" in last_error and "Replication lost" not in last_error
        assert on_db("shard1", "SELECT state FROM qq_fence WHERE move_id = %s", [move.id]) == [("tracking",)]
        assert prompt_on("shard2", row_id) != "written after the expiry"
    finally:
        holder.rollback()
        holder.close()

    wait_until(lambda: prompt_on("shard2", row_id) == "written after the expiry", timeout=30, what="replication")
    assert "Writes switched" in shardmove("switch-writes", str(move.id))
    assert latest_move().phase == "writes_switched"
    assert prompt_on("shard2", row_id) == "written after the expiry"


def test_a_lock_timeout_names_the_transaction_holding_the_tables_and_its_pid() -> None:
    move = reads_switched_and_verified()
    holder = psycopg.connect(conninfo_for("shard1"), application_name="long-report")
    try:
        # A long transaction outside the moving range: it holds the table's ROW EXCLUSIVE lock until it ends.
        holder.execute("UPDATE content_generation SET prompt = prompt || '.' WHERE user_id = 700")
        pid = holder.info.backend_pid
        with pytest.raises(CommandError) as refused:
            shardmove("switch-writes", str(move.id), "--attempts", "1")
        message = str(refused.value)
        assert f"PID {pid} holds RowExclusiveLock on content_generation" in message, message
        assert "'long-report'" in message and f"pg_terminate_backend({pid})" in message
        assert "with a larger --max-freeze" not in message
        assert f"PID {pid}" in MoveRange.objects.get(id=move.id).last_error
        assert latest_move().phase == "reads_switched"
    finally:
        holder.rollback()
        holder.close()
    assert "Writes switched" in shardmove("switch-writes", str(move.id))
    timings = MoveEvent.objects.get(move_id=move.id, kind="cut-over").data
    steps = ("lock_and_freeze", "catch_up", "verify_changed", "slot", "commit")
    assert all(0 <= timings[step] <= timings["freeze"] for step in steps), timings
