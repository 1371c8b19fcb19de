"""Verification names the exact rows that differ and resumes where it stopped; status tells the whole story."""

from __future__ import annotations

import itertools
import json
import signal

import psycopg
import pytest
from django.core.management.base import CommandError

from migrations_tooling.models import VerifyChunk, VerifyRun
from migrations_tooling.schema import sharded_tables
from shardrouter.control import conninfo_for
from tests.conftest import ALL_DATABASES
from tests.moves.support import Ledger, Operator, latest_move, on_db, seed, shardmove, wait_for_phase
from tests.support import wait_until

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)


def started_move(rows_per_user: int = 50) -> int:
    seed(Ledger(), "shard1", [10, 20, 30, 40, 600], per_user=rows_per_user)
    shardmove("start", "0", "500", "--to", "shard3")
    move = latest_move()
    wait_for_phase(move.id, "catching_up")
    return move.id


@pytest.mark.slow
def test_verify_lists_exactly_the_rows_that_differ_and_switch_writes_refuses_them() -> None:
    move_id = started_move()
    changed, removed = on_db("shard1", "SELECT id FROM content_generation WHERE user_id = 20 ORDER BY id LIMIT 2")
    with psycopg.connect(conninfo_for("shard3"), autocommit=True) as target:
        # Writes that bypass replication (as a buggy job or a manual fix on the target would).
        target.execute("SET session_replication_role = replica")
        target.execute("UPDATE content_generation SET prompt = 'tampered' WHERE id = %s", [changed[0]])
        target.execute("DELETE FROM content_generation WHERE id = %s", [removed[0]])

    with pytest.raises(CommandError, match="2 mismatching row"):
        shardmove("verify", str(move_id), "--chunk-rows", "40")
    run = VerifyRun.objects.get(move_id=move_id)
    assert sorted((m["id"], m["problem"]) for m in run.mismatches) == sorted(
        [(changed[0], "differs"), (removed[0], "missing on shard3")]
    )
    shardmove("switch-reads", str(move_id))
    with pytest.raises(CommandError, match="mismatching row"):
        shardmove("switch-writes", str(move_id))
    assert latest_move().phase == "reads_switched"
    assert on_db("shard1", "SELECT state FROM qq_fence") == [("tracking",)]


@pytest.mark.slow
def test_an_interrupted_verify_resumes_where_it_stopped() -> None:
    move_id = started_move(rows_per_user=100)
    operator = Operator("verify", str(move_id), "--chunk-rows", "20", pause_at="verify:chunk")
    operator.wait_for("paused at verify:chunk")
    operator.kill()
    run = VerifyRun.objects.get(move_id=move_id)
    done = VerifyChunk.objects.filter(run=run).count()
    assert run.outcome == "running" and 0 < done < 40

    output = shardmove("verify", str(move_id), "--chunk-rows", "20")
    assert f"Resuming verify run {run.id}" in output and "800 rows match" in output
    chunks = list(VerifyChunk.objects.filter(run=run).order_by("table", "seq"))
    for table in ("content_generation", "content_usageevent"):
        mine = [c for c in chunks if c.table == table]
        assert [c.seq for c in mine] == list(range(len(mine)))  # no chunk skipped or done twice
        assert sum(c.primary_rows for c in mine) == 400
        assert all(a.id_hi == b.id_lo for a, b in itertools.pairwise(mine))


def test_status_reports_phase_copy_progress_lag_and_traffic() -> None:
    move_id = started_move()
    data = json.loads(shardmove("status", str(move_id), "--json"))
    assert data["phase"] == "catching_up"
    assert (data["reads"], data["writes"]) == ("shard1", "shard1")
    tables = {t["table"]: (t["state"], t["rows_copied"]) for t in data["tables"]}
    assert tables["content_generation"] == tables["content_usageevent"] == ("ready", 200)
    assert set(tables) == {t.name for t in sharded_tables()}  # every sharded table moves, whatever the app
    assert {state for state, _ in tables.values()} == {"ready"}
    assert data["lag_bytes"] is not None and data["replication"].startswith(f"qq_move_{move_id}_fwd")

    shardmove("switch-reads", str(move_id))
    text = shardmove("status", str(move_id))
    assert "traffic   reads: shard3, writes: shard1" in text
    assert "phase     reads_switched" in text


@pytest.mark.slow
def test_status_watch_refreshes_until_interrupted() -> None:
    move_id = started_move(rows_per_user=5)
    operator = Operator("status", str(move_id), "--watch", "--interval", "0.2")
    operator.wait_for("traffic")
    wait_until(lambda: operator.text.count(f"Move {move_id}:") >= 2, timeout=30, what="a second frame")
    operator.proc.send_signal(signal.SIGTERM)
    code, text = operator.finish()
    assert code == 0
    assert text.count(f"Move {move_id}:") >= 2
