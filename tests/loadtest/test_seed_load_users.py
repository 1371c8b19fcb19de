"""``manage.py seed_load_users``: load accounts on every shard, each with history; safe to re-run."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command

from apps.accounts.seeding import api_tokens_available
from tests.conftest import ALL_DATABASES, raw_rows

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


def seed(**options: object) -> str:
    out = StringIO()
    call_command("seed_load_users", stdout=out, **options)
    return out.getvalue()


def generations_per_user(alias: str) -> dict[int, int]:
    rows = raw_rows(alias, "SELECT user_id, count(*) FROM content_generation GROUP BY user_id")
    return dict(rows)


def test_seeded_users_are_spread_over_every_shard_each_with_finished_history() -> None:
    output = seed(users=6, generations_per_user=3, prefix="load", password="load-pass-123")
    users = dict(raw_rows("default", "SELECT username, id FROM auth_user WHERE username LIKE 'load%%'"))
    assert sorted(users) == [f"load{n}" for n in range(1, 7)]
    # The standard map: IDs below 1000 on shard1, the rest on shard2; seeding alternates between them.
    assert sorted(uid < 1000 for uid in users.values()) == [False] * 3 + [True] * 3
    shard1, shard2 = generations_per_user("shard1"), generations_per_user("shard2")
    assert sorted(shard1) == sorted(uid for uid in users.values() if uid < 1000)
    assert sorted(shard2) == sorted(uid for uid in users.values() if uid >= 1000)
    assert set(shard1.values()) | set(shard2.values()) == {3}
    statuses = raw_rows("shard1", "SELECT DISTINCT status FROM content_generation") + raw_rows(
        "shard2", "SELECT DISTINCT status FROM content_generation"
    )
    assert set(statuses) == {("succeeded",)}, "seeded history is finished work, never queued"
    assert authenticate(username="load4", password="load-pass-123") is not None
    assert "6 load users ready (6 created, 0 existing; shard1: 3, shard2: 3); 18 generations created" in output


def test_seeding_again_tops_up_and_creates_nothing_twice() -> None:
    seed(users=4, generations_per_user=2)
    output = seed(users=6, generations_per_user=3)
    assert "6 load users ready (2 created, 4 existing; shard1: 3, shard2: 3); 10 generations created" in output
    counts = {**generations_per_user("shard1"), **generations_per_user("shard2")}
    assert sorted(counts.values()) == [3] * 6
    assert "0 created, 6 existing" in seed(users=6, generations_per_user=3)


def test_a_dry_run_says_what_it_would_create_and_changes_nothing() -> None:
    seed(users=2, generations_per_user=1)
    output = seed(users=5, generations_per_user=2, dry_run=True)
    assert "Dry run: 2 of 5 users exist; would create 3 (per shard: shard1: 2, shard2: 1) and 8 generations." in output
    assert raw_rows("default", "SELECT count(*) FROM auth_user") == [(2,)]


def test_seeded_users_get_api_tokens_since_the_token_app_is_installed() -> None:
    assert api_tokens_available()
    output = seed(users=2, generations_per_user=0)
    assert "2 API tokens created" in output
    assert raw_rows("default", "SELECT count(*) FROM security_apitoken") == [(2,)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"users": 0}, "--users must be at least 1"),
        ({"prefix": "load-test"}, "--prefix 'load-test' must be letters, digits and underscores"),
    ],
)
def test_bad_arguments_are_refused_with_the_fix(options: dict[str, object], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        seed(**options)
