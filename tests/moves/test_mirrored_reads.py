"""Mirrored reads: a row altered on the target is caught and blocks switch-reads; a clean move under load has none."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.core.management.base import CommandError

from apps.content.models import Generation
from migrations_tooling.mirror import mirror, mirror_summary
from migrations_tooling.models import MirrorMismatch, MoveRange
from shardrouter.control import conninfo_for
from tests.conftest import ALL_DATABASES
from tests.moves.support import Ledger, Load, latest_move, on_db, seed, shardmove, wait_for_phase, wait_until

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]

SECRET = "row data that must never be logged"


@pytest.fixture(autouse=True)
def mirror_every_read(settings: Any) -> Iterator[None]:
    settings.SHARDMOVE = {**settings.SHARDMOVE, "MIRROR_READS_SHARE": 1.0, "MIRROR_MISMATCH_WINDOW_SECONDS": 600}
    mirror.reset()
    yield
    wait_until(mirror.idle, timeout=30, what="mirrored reads to finish")
    mirror.reset()


def catching_up_move() -> MoveRange:
    shardmove("start", "0", "500", "--to", "shard3")
    move = latest_move()
    wait_for_phase(move.id, "catching_up")
    return move


def read_users(users: list[int], rounds: int) -> None:
    for _ in range(rounds):
        for user in users:
            list(Generation.objects.for_user(user).order_by("id"))


def test_a_row_altered_on_the_target_is_caught_and_blocks_switch_reads(caplog: pytest.LogCaptureFixture) -> None:
    seed(Ledger(), "shard1", [10, 20, 30], per_user=5)
    move = catching_up_move()
    victim = on_db("shard1", "SELECT id FROM content_generation WHERE user_id = 20 ORDER BY id LIMIT 1")[0][0]
    subscription = f"qq_move_{move.id}_fwd"
    # Written on the target while replication is paused, past the fence (as only a bug or a person would).
    on_db("shard3", f'ALTER SUBSCRIPTION "{subscription}" DISABLE')
    with psycopg.connect(conninfo_for("shard3"), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE content_generation SET prompt = %s WHERE id = %s", [SECRET, victim])
    on_db("shard3", f'ALTER SUBSCRIPTION "{subscription}" ENABLE')

    with caplog.at_level(logging.ERROR, logger="migrations_tooling.mirror"):
        read_users([10, 20, 30], rounds=2)
        wait_until(mirror.idle, timeout=60, what="mirrored reads to be compared")
    found = mirror_summary(move)
    assert found.reads == 6 and found.mismatches == 2 and found.dropped == 0  # user 20, read twice
    assert found.latency_ratio is not None and found.latency_ratio > 0
    mismatch = MirrorMismatch.objects.filter(move=move).first()
    assert mismatch is not None and mismatch.table == "content_generation"
    assert "test_mirrored_reads.py" in mismatch.call_site and "read_users" in mismatch.call_site
    assert "differs on shard3" in caplog.text and SECRET not in caplog.text  # call site, never the row

    with pytest.raises(CommandError, match=r"2 mirrored read\(s\) of move .* returned different rows"):
        shardmove("switch-reads", str(move.id))
    assert MoveRange.objects.get(id=move.id).phase == "catching_up"
    status = shardmove("status", str(move.id))
    assert "mirrored  6 read(s), 2 mismatch(es) (2 recent)" in status
    shardmove("switch-reads", str(move.id), "--force")
    assert MoveRange.objects.get(id=move.id).phase == "reads_switched"


def test_a_clean_move_under_write_load_has_no_mismatch(settings: Any) -> None:
    settings.SHARDMOVE = {**settings.SHARDMOVE, "MIRROR_READS_SHARE": 0.3}
    ledger = Ledger()
    users = [10, 20, 30, 40, 50, 60]
    seed(ledger, "shard1", users, per_user=5)
    move = catching_up_move()
    with Load(ledger, users, threads=2, pause=0.005) as load:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:  # reads beside the writes for 2 s at least ...
            read_users(users, rounds=1)

        def more_than_50_compared() -> bool:  # ... and until enough were compared (fewer a second on a busy machine)
            read_users(users, rounds=1)
            return mirror_summary(move).reads > 50

        wait_until(more_than_50_compared, timeout=120, what="more than 50 mirrored reads to be compared")
        load.wait_for_writes(20)
    assert not load.errors, load.errors
    wait_until(mirror.idle, timeout=120, what="mirrored reads to be compared")
    found = mirror_summary(move)
    assert found.reads > 50 and found.mismatches == 0, found
    shardmove("switch-reads", str(move.id))  # nothing blocks it
    assert MoveRange.objects.get(id=move.id).phase == "reads_switched"
