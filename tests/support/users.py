"""Shared user fixtures: users with chosen IDs (the ID decides the shard), and a logged-in test client.

Registered for every test folder by ``pytest_plugins`` in tests/conftest.py. Under the standard test map,
IDs below 1000 are on shard1 and the rest on shard2.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connections
from django.test import Client

PASSWORD = "correct horse battery"


@pytest.fixture
def make_user(django_db_blocker: Any) -> Any:
    """Create a user with a chosen ID (the ID decides the shard): ``make_user(1010)``."""
    from django.contrib.auth.models import User

    def create(user_id: int, username: str | None = None, password: str = PASSWORD) -> User:
        user = User(id=user_id, username=username or f"user{user_id}")
        user.set_password(password)
        user.save(force_insert=True)
        with connections["default"].cursor() as cursor:
            cursor.execute(
                "SELECT setval(pg_get_serial_sequence('auth_user', 'id'), GREATEST((SELECT max(id) FROM auth_user), 1))"
            )
        return user

    return create


@pytest.fixture
def alice(make_user: Any) -> Any:
    """A user on shard1."""
    return make_user(10, "alice")


@pytest.fixture
def bob(make_user: Any) -> Any:
    """A user on shard2."""
    return make_user(1010, "bob")


@pytest.fixture
def carol(make_user: Any) -> Any:
    """A second user on shard1, next to alice."""
    return make_user(11, "carol")


def logged_in(user: Any) -> Client:
    """A test client with ``user``'s session."""
    client = Client()
    client.force_login(user)
    return client
