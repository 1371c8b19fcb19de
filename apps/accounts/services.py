"""Account writes: sign-up and placing seeded users across the shard map's ranges."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.db import connections, transaction

from shardrouter.shardmap import current_map

# Serialises explicit user-ID allocation (seeding) against itself.
_SEED_LOCK_KEY = 0x5151_5EED


def user_signup(*, username: str, password: str) -> User:
    """A new user; the ID comes from the control database's sequence, so new users fill the top range."""
    return User.objects.create_user(username=username, password=password)


@dataclass(frozen=True)
class SeededUser:
    user: User
    alias: str
    created: bool


def _reset_user_sequence() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence('auth_user', 'id'), GREATEST((SELECT max(id) FROM auth_user), 1))"
        )


def user_create_in_range(*, username: str, password: str, lo: int, hi: int, password_hash: str | None = None) -> User:
    """Create a user whose ID falls in ``[lo, hi)``, so their rows land on that range's shard.

    ``password_hash`` (from ``make_password``) is stored as is instead of hashing ``password`` again.
    """
    with transaction.atomic(using="default"):
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SEED_LOCK_KEY])
        top = User.objects.filter(id__gte=max(lo, 1), id__lt=hi).order_by("-id").values_list("id", flat=True).first()
        new_id = (top + 1) if top is not None else max(lo, 1)
        if new_id >= hi:
            raise ValueError(f"User IDs [{lo}, {hi}) are all taken; seed into another range.")
        user = User(id=new_id, username=username)
        if password_hash is None:
            user.set_password(password)
        else:
            user.password = password_hash
        user.save(force_insert=True)
        # Keep the sequence ahead of explicit IDs so later sign-ups never collide with them.
        _reset_user_sequence()
    return user


def seed_targets() -> list[tuple[str, tuple[int, int]]]:
    """Where seeded user number n goes: entry ``(n - 1) % len(targets)``, each a write alias and its first range."""
    by_alias: dict[str, tuple[int, int]] = {}
    for item in current_map().ranges:
        by_alias.setdefault(item.alias, (item.lo, item.hi))
    return sorted(by_alias.items())


def users_seed_iter(*, prefix: str, count: int, password: str) -> Iterator[SeededUser]:
    """Create (or find) ``count`` users named ``{prefix}{n}``, spread round-robin over the shards, one at a time.

    Each user is placed in the range of a different write database in turn, so
    load and demo data touch every shard. Re-running finds the existing users.
    The password is hashed once for the whole batch (a hash costs about 0.2 s of
    CPU by design), so the seeded users share one salt: fine for demo and load
    accounts, never for real ones.
    """
    targets = seed_targets()
    password_hash: str | None = None
    for n in range(1, count + 1):
        username = f"{prefix}{n}"
        alias, (lo, hi) = targets[(n - 1) % len(targets)]
        existing = User.objects.filter(username=username).first()
        if existing is not None:
            yield SeededUser(existing, current_map().write_alias(existing.id), created=False)
            continue
        password_hash = password_hash or make_password(password)
        user = user_create_in_range(username=username, password=password, lo=lo, hi=hi, password_hash=password_hash)
        yield SeededUser(user, alias, created=True)


def users_seed(*, prefix: str, count: int, password: str) -> list[SeededUser]:
    """Create (or find) ``count`` users named ``{prefix}{n}``, spread round-robin over the shards."""
    return list(users_seed_iter(prefix=prefix, count=count, password=password))
