"""`status` only reads; `refresh` records the copy; a copy that keeps failing shows as failing, with its cause."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.management.base import CommandError

from apps.content.models import Generation
from migrations_tooling.models import MoveEvent, MoveRange, MoveTable, VerifyRun
from shardrouter.mapstore import load_map_from_database
from tests.conftest import ALL_DATABASES
from tests.moves.support import Ledger, Operator, latest_move, on_db, seed, shardmove, wait_for_phase
from tests.support import wait_until

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]

# Standard map: [0, 1000) on shard1, [1000, MAX) on shard2; shard3 holds nothing. Moves take [0, 500) to shard3.


def status_json(move_id: int) -> dict[str, Any]:
    return json.loads(shardmove("status", str(move_id), "--json"))  # type: ignore[no-any-return]


def control_state(move_id: int) -> tuple[Any, ...]:
    return (
        MoveRange.objects.filter(id=move_id).values().get(),
        list(MoveTable.objects.filter(move_id=move_id).order_by("id").values()),
        list(MoveEvent.objects.filter(move_id=move_id).order_by("id").values_list("id", "kind")),
        VerifyRun.objects.filter(move_id=move_id).count(),
        load_map_from_database().version,
    )


def test_status_changes_nothing_even_when_the_copy_has_finished_and_refresh_records_it() -> None:
    seed(Ledger(), "shard1", [10, 20, 30], per_user=20)
    shardmove("start", "0", "500", "--to", "shard3")
    move = latest_move()

    def finished_copy_seen() -> dict[str, Any] | None:
        data = status_json(move.id)
        return data if any("initial copy has finished" in w for w in data["warnings"]) else None

    data = wait_until(finished_copy_seen, timeout=60, what="status to see the copy finished", poll=0.2)
    assert data["phase"] == "copying"
    assert {t["state"] for t in data["tables"]} == {"ready"}  # what the target reports, shown as it is now
    before = control_state(move.id)
    for args in ([str(move.id)], [str(move.id), "--json"], ["--all"], ["--all", "--json"], []):
        shardmove("status", *args)
    assert control_state(move.id) == before  # no row, event or phase written by status

    assert "catching_up" in shardmove("refresh", str(move.id))
    refreshed = MoveRange.objects.get(id=move.id)
    assert refreshed.phase == "catching_up" and refreshed.copy_finished_at is not None
    assert MoveEvent.objects.filter(move_id=move.id, kind="copied").count() == 1
    copied = dict(MoveTable.objects.filter(move_id=move.id).values_list("table", "rows_copied"))
    assert copied["content_generation"] == copied["content_usageevent"] == 60


def test_plan_refuses_a_range_whose_ids_another_user_already_has_on_the_target() -> None:
    seed(Ledger(), "shard1", [10, 20], per_user=5)
    taken = on_db("shard1", "SELECT id FROM content_generation WHERE user_id = 20 ORDER BY id LIMIT 1")[0][0]
    Generation.objects.using("shard3").create(id=taken, user_id=5000, prompt="same id, other user")
    for command in ("plan", "start"):
        with pytest.raises(CommandError) as refused:
            shardmove(command, "0", "500", "--to", "shard3")
        assert f"content_generation id={taken} (user 20) is taken on shard3 by user 5000" in str(refused.value)
    assert MoveRange.objects.count() == 0
    # Other users' rows on a target are no obstacle while their IDs differ (IDs interleave: all are looked up).
    seed(Ledger(), "shard2", [1000, 8000], per_user=5)
    assert "no row of the range has an ID already used on shard2" in shardmove("plan", "0", "500", "--to", "shard2")


def test_a_copy_that_keeps_failing_shows_as_failing_with_its_cause_and_recovers_once_fixed() -> None:
    seed(Ledger(), "shard1", [10, 20], per_user=5)
    taken = on_db("shard1", "SELECT id FROM content_generation WHERE user_id = 10 ORDER BY id LIMIT 1")[0][0]
    # The clash appears after `plan` checked (a row written on the target meanwhile): set-up is paused, then resumed.
    operator = Operator("start", "0", "500", "--to", "shard3", pause_at="start:slot")
    operator.wait_for("paused at start:slot")
    Generation.objects.using("shard3").create(id=taken, user_id=5000, prompt="same id, other user")
    operator.kill()
    shardmove("start", "0", "500", "--to", "shard3")
    move = latest_move()

    data = wait_until(
        lambda: (d := status_json(move.id))["copy_error"] and d, timeout=60, what="the copy to fail", poll=0.2
    )
    assert f"content_generation id={taken} (user 10) is taken on shard3 by user 5000" in data["copy_error"]
    assert data["eta_seconds"] is None and data["phase"] == "copying"

    def failing_copy_line() -> str | None:
        line = next(line for line in shardmove("status", str(move.id)).splitlines() if line.startswith("  copy "))
        return line if "FAILING" in line else None

    line = wait_until(failing_copy_line, timeout=30, what="a FAILING copy line")
    assert f"id={taken}" in line and "ETA" not in line

    on_db("shard3", "DELETE FROM content_generation WHERE id = %s AND user_id = 5000", [taken])
    wait_for_phase(move.id, "catching_up", timeout=90)  # the servers retry the copy by themselves
    assert status_json(move.id)["copy_error"] == ""
    assert "rows match" in shardmove("verify", str(move.id))


def test_status_after_an_interrupted_complete_says_to_rerun_it_and_does_not_miss_the_dropped_slot() -> None:
    seed(Ledger(), "shard1", [10, 20], per_user=10)
    shardmove("start", "0", "500", "--to", "shard3")
    move = latest_move()
    wait_for_phase(move.id, "catching_up")
    shardmove("switch-reads", str(move.id))
    shardmove("switch-writes", str(move.id))
    operator = Operator("complete", str(move.id), pause_at="complete:replication-dropped")
    operator.wait_for("paused at complete:replication-dropped")
    operator.kill()

    data = status_json(move.id)
    assert not [w for w in data["warnings"] if "missing" in w], data["warnings"]
    assert any(f"re-run `shardmove complete {move.id}`" in w for w in data["warnings"]), data["warnings"]
    assert data["replication"] == "none"
    assert "Complete" in shardmove("complete", str(move.id))
    assert status_json(move.id)["warnings"] == []
