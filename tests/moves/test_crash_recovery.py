"""Killing the operator's command at any point never loses data, and re-running it finishes the job.

The killed commands are child processes (``Operator``: SIGKILL at a pause point); the re-runs run in the test
process, as any later command would (the kill is what these tests are about, not where the re-run runs).
"""

from __future__ import annotations

from datetime import datetime

import pytest
from django.core.management.base import CommandError
from django.db import connections

from apps.content.models import Generation
from migrations_tooling.models import MoveRange
from migrations_tooling.selectors import move_status
from quantumquill.devstack.stack import stack_from_state
from shardrouter.writes import run_sharded_write
from tests.conftest import ALL_DATABASES
from tests.moves.support import (
    Ledger,
    Load,
    Operator,
    assert_every_write_in_place,
    latest_move,
    on_db,
    seed,
    shardmove,
    wait_for_phase,
    wait_until,
)

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]

# Standard map: [0, 1000) on shard1, [1000, MAX) on shard2. The moves below take [1000, 5000) to shard3.
IN_RANGE = [1001, 1500, 2600, 4999]
OUTSIDE = [40, 999, 5000, 90_000]


def count_in(alias: str, lo: int, hi: int) -> int:
    return on_db(alias, "SELECT count(*) FROM content_generation WHERE user_id >= %s AND user_id < %s", [lo, hi])[0][0]


def fence_row(alias: str, move_id: int) -> tuple[str, datetime | None]:
    rows = on_db(alias, "SELECT state, expires_at FROM qq_fence WHERE move_id = %s", [move_id])
    assert rows, f"no fence for move {move_id} on {alias}"
    return rows[0]


def moved_and_reads_switched(ledger: Ledger) -> MoveRange:
    seed(ledger, "shard2", [*IN_RANGE, 5000, 90000], per_user=30)
    seed(ledger, "shard1", [40, 999], per_user=30)
    shardmove("start", "1000", "5000", "--to", "shard3")
    move = latest_move()
    wait_for_phase(move.id, "catching_up")
    shardmove("switch-reads", str(move.id))
    shardmove("verify", str(move.id))
    return move


def test_killing_start_mid_set_up_and_during_the_copy_then_rerunning_it_finishes_the_copy() -> None:
    ledger = Ledger()
    seed(ledger, "shard1", [10, 200, 499, 600], per_user=500)

    operator = Operator("start", "0", "500", "--to", "shard2", pause_at="start:slot")
    operator.wait_for("paused at start:slot")
    operator.kill()
    move = latest_move()
    assert move.phase == "copying" and move.copy_started_at is None
    assert on_db(
        "shard1", "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", [f"qq_move_{move.id}_fwd"]
    ) == [(1,)]

    # The lease of the killed process is taken over at once; this run is killed while the servers copy.
    operator = Operator("start", "0", "500", "--to", "shard2", "--wait", pause_at="start:subscription")
    operator.wait_for("paused at start:subscription")
    operator.kill()

    assert "was started already" in shardmove("start", "0", "500", "--to", "shard2")
    wait_for_phase(move.id, "catching_up")
    assert "rows match" in shardmove("verify", str(move.id))
    assert count_in("shard2", 0, 500) == count_in("shard1", 0, 500) == 1500
    assert MoveRange.objects.count() == 1


def test_killing_switch_writes_inside_the_freeze_lets_writes_resume_at_the_limit_and_a_rerun_finishes() -> None:
    ledger = Ledger()
    move = moved_and_reads_switched(ledger)
    with Load(ledger, IN_RANGE + OUTSIDE, threads=3) as load:
        load.wait_for_writes(30)
        operator = Operator("switch-writes", str(move.id), "--max-freeze", "1.5", pause_at="switch-writes:frozen")
        operator.wait_for("paused at switch-writes:frozen")
        state, expires = fence_row("shard2", move.id)
        assert state == "frozen"
        # A second operator cannot drive the move while the first one lives.
        with pytest.raises(CommandError, match="is being driven by"):
            shardmove("switch-writes", str(move.id))
        operator.kill()

        # Nobody unfreezes the range: the database lets writes through once the freeze expires.
        wait_until(
            lambda: on_db("shard2", "SELECT clock_timestamp() > %s", [expires])[0][0],
            timeout=10,
            what="the freeze to expire",
        )
        created = run_sharded_write(
            user_id=1500, work=lambda: Generation.objects.create(user_id=1500, prompt="after the limit"), max_wait=0
        )
        ledger.created(created.id, 1500, "after the limit", with_usage=False)
        assert move_status(move).writes == "shard2"
        load.wait_for_writes(30)

        assert "Writes switched" in shardmove("switch-writes", str(move.id))
        load.wait_for_writes(30)
    assert load.errors == [], load.errors[0]
    assert fence_row("shard2", move.id)[0] == "moved"
    shardmove("complete", str(move.id))
    assert_every_write_in_place(ledger)


def test_killing_switch_writes_after_its_commit_point_never_blocks_writes_and_a_rerun_finishes() -> None:
    ledger = Ledger()
    move = moved_and_reads_switched(ledger)
    with Load(ledger, IN_RANGE + OUTSIDE, threads=3) as load:
        load.wait_for_writes(30)
        operator = Operator("switch-writes", str(move.id), pause_at="switch-writes:committed")
        operator.wait_for("paused at switch-writes:committed")
        operator.kill()
        # The map still sends writes to shard2, which refuses them naming shard3: they land on shard3.
        assert fence_row("shard2", move.id)[0] == "moved"
        status = move_status(move)
        assert status.writes == "shard2" and any("after its commit point" in w for w in status.warnings)
        load.wait_for_writes(60)
        assert count_in("shard3", 1000, 5000) > count_in("shard2", 1000, 5000)

        assert "Finishing switch-writes" in shardmove("switch-writes", str(move.id))
        assert move_status(move).writes == "shard3"
        load.wait_for_writes(30)
    assert load.errors == [], load.errors[0]
    shardmove("complete", str(move.id))
    assert_every_write_in_place(ledger)


def test_killing_complete_midway_then_rerunning_it_deletes_exactly_the_moved_rows_from_the_source() -> None:
    ledger = Ledger()
    move = moved_and_reads_switched(ledger)
    shardmove("switch-writes", str(move.id))
    outside_before = count_in("shard2", 5000, 2**62)

    operator = Operator("complete", str(move.id), "--batch-rows", "20", "--pause", "0", pause_at="complete:batch")
    operator.wait_for("paused at complete:batch")
    operator.kill()
    assert 0 < count_in("shard2", 1000, 5000) < 120
    with pytest.raises(CommandError, match="cannot be rolled back any more"):
        shardmove("rollback", str(move.id))

    assert "Complete" in shardmove("complete", str(move.id), "--batch-rows", "20", "--pause", "0")
    assert count_in("shard2", 1000, 5000) == 0
    assert count_in("shard2", 5000, 2**62) == outside_before
    assert count_in("shard3", 1000, 5000) == 120
    assert latest_move().phase == "complete"
    assert on_db("shard2", "SELECT count(*) FROM qq_fence") == [(0,)]
    assert_every_write_in_place(ledger)


def test_a_restart_of_the_target_server_mid_move_loses_no_write() -> None:
    ledger = Ledger()
    seed(ledger, "shard2", [1500, 2600, 7000], per_user=30)
    shardmove("start", "1000", "5000", "--to", "shard3")
    move = latest_move()
    wait_for_phase(move.id, "catching_up")
    # Only users on shard2's server: shard3 shares its server (pg1) with shard1, which goes down too.
    with Load(ledger, [*IN_RANGE, 5000, 90_000], threads=2) as load:
        load.wait_for_writes(30)
        target_server = stack_from_state().postgres("pg1")
        target_server.stop()
        load.wait_for_writes(60)  # the source keeps taking writes; its slot keeps them for the target
        target_server.start()
        connections.close_all()
        assert "rows match" in shardmove("verify", str(move.id))
        shardmove("switch-reads", str(move.id))
        assert "Writes switched" in shardmove("switch-writes", str(move.id))
        load.wait_for_writes(30)
    assert load.errors == [], load.errors[0]
    shardmove("complete", str(move.id))
    assert_every_write_in_place(ledger)
