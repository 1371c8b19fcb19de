"""Deleting an account while a live move copies the user's range leaves no row on any database."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings

from apps.accounts.deletion import account_delete
from tests.conftest import ALL_DATABASES
from tests.moves.support import Ledger, latest_move, on_db, seed, shardmove, wait_for_phase, wait_until

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]
TABLES = ("content_generation", "content_usageevent", "exports_export")


def rows_of(user_id: int) -> dict[str, int]:
    return {
        f"{alias}.{table}": on_db(alias, f"SELECT count(*) FROM {table} WHERE user_id = %s", [user_id])[0][0]
        for alias in settings.DATABASES
        for table in TABLES
    }


def test_deleting_an_account_during_a_live_move_of_its_range_leaves_no_row_anywhere(make_user: Any) -> None:
    # Standard map: [0, 1000) on shard1. The move takes [0, 500) to shard2; user 130 is in it, 700 is not.
    user, neighbour = make_user(130, "nora"), make_user(700, "otto")
    seed(Ledger(), "shard1", [130, 700], per_user=30)
    shardmove("start", "0", "500", "--to", "shard2")
    move = latest_move()
    wait_for_phase(move.id, "catching_up")
    assert on_db("shard2", "SELECT count(*) FROM content_generation WHERE user_id = 130") == [(30,)]

    result = account_delete(user=user)

    assert result.rows["shard1"]["content_generation"] == 30
    # Replication carries the source's deletes to the copy; the copy was emptied directly as well.
    wait_until(lambda: not any(rows_of(130).values()), timeout=20, what="no row of user 130 anywhere")
    assert on_db("default", "SELECT count(*) FROM auth_user WHERE id = 130") == [(0,)]
    assert on_db("shard1", "SELECT count(*) FROM content_generation WHERE user_id = 700") == [(30,)]
    # The move goes on and completes; nothing of the user comes back.
    shardmove("switch-reads", str(move.id))
    shardmove("switch-writes", str(move.id))
    shardmove("complete", str(move.id))
    assert not any(rows_of(130).values())
    assert on_db("shard2", "SELECT count(*) FROM content_generation WHERE user_id = 700") == [(0,)]
    assert neighbour.pk == 700
