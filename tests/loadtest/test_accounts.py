"""Simulated users share the seeded accounts round-robin, so every shard gets its share."""

from __future__ import annotations

from locustfiles.accounts import AccountPool


def test_accounts_are_handed_out_round_robin_and_wrap() -> None:
    pool = AccountPool(prefix="load", count=3, password="pw")
    assert [pool.take().username for _ in range(7)] == ["load1", "load2", "load3", "load1", "load2", "load3", "load1"]


def test_consecutive_users_alternate_between_shards_as_the_seeding_placed_them() -> None:
    # seed_load_users places user n on shard (n - 1) % shards: consecutive takes alternate shards.
    pool = AccountPool(prefix="load", count=200, password="pw")
    shards = [(int(pool.take().username.removeprefix("load")) - 1) % 2 for _ in range(10)]
    assert shards == [0, 1] * 5
