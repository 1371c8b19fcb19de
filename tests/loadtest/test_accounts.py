"""Simulated users share the seeded accounts round-robin, so every shard gets its share."""

from __future__ import annotations

from io import StringIO
from itertools import pairwise

import pytest
from django.core.management import call_command

from locustfiles.accounts import AccountPool
from tests.conftest import ALL_DATABASES, raw_rows


def test_accounts_are_handed_out_round_robin_and_wrap() -> None:
    pool = AccountPool(prefix="load", count=3, password="pw")
    assert [pool.take().username for _ in range(7)] == ["load1", "load2", "load3", "load1", "load2", "load3", "load1"]


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_consecutive_simulated_users_alternate_between_the_shards_seed_load_users_put_them_on() -> None:
    call_command("seed_load_users", users=6, generations_per_user=1, password="load-pass-123", stdout=StringIO())
    # Where the seeding actually put each account: the shard that holds its history.
    usernames = dict(raw_rows("default", "SELECT id, username FROM auth_user"))
    placed = {
        usernames[user_id]: alias
        for alias in ("shard1", "shard2")
        for (user_id,) in raw_rows(alias, "SELECT DISTINCT user_id FROM content_generation")
    }
    assert len(placed) == 6

    pool = AccountPool(prefix="load", count=6, password="load-pass-123")
    shards = [placed[pool.take().username] for _ in range(12)]
    assert set(shards) == {"shard1", "shard2"}
    assert all(this != following for this, following in pairwise(shards)), shards
