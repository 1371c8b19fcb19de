"""Fixtures for the warehouse: a real DuckDB file and a real PostgreSQL warehouse database, and sample data.

Change capture leaves a slot and a publication on every source database; they
live outside Django's tables, so each test drops them afterwards (a leftover
slot would hold WAL and show up in the move tests' checks).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings

from apps.analytics import capture
from apps.analytics.conf import WarehouseConfig
from apps.content.models import Generation, UsageEvent
from shardrouter.control import conninfo_for
from shardrouter.ids import new_id

# Shorter fixed waits of the move engine (a one-window throttle baseline, a 0.25 s map refresh) and cheap password
# hashes: tests/moves/fixtures.py.
from tests.moves.fixtures import cheap_passwords, quick_moves  # noqa: F401
from tests.moves.support import copy_into

DAY0 = datetime(2026, 11, 1, tzinfo=UTC)
SINCE_TEXT, UNTIL_TEXT = "2026-11-01", "2026-11-26"  # a window covering every seeded day
MODELS = ["ngram-small", "ngram-large", ""]
STATUSES = ["succeeded", "succeeded", "succeeded", "failed", "queued", "cancelled"]


def drop_capture_everywhere() -> None:
    for alias in settings.DATABASES:
        try:
            with capture.source_connection(alias) as conn:
                capture.drop_capture(conn)
        except psycopg.OperationalError:
            pass


@pytest.fixture(autouse=True)
def no_capture_leftovers(django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock():
        drop_capture_everywhere()
    yield
    with django_db_blocker.unblock():
        drop_capture_everywhere()


@pytest.fixture
def duckdb_warehouse(tmp_path: Path) -> WarehouseConfig:
    return WarehouseConfig(duckdb_path=tmp_path / "warehouse.duckdb", poll_seconds=0.1)


@pytest.fixture
def postgres_warehouse(django_db_blocker: Any, tmp_path: Path) -> Iterator[WarehouseConfig]:
    """A private database on the control server (the embedded test stack), dropped afterwards."""
    name = f"test_warehouse_{uuid.uuid4().hex[:8]}"
    with django_db_blocker.unblock():
        admin = conninfo_for("default")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        info = conn.info
        url = f"postgres://{info.user}@{info.host}:{info.port}/{name}"
    yield WarehouseConfig(url=url, duckdb_path=tmp_path / "unused.duckdb", poll_seconds=0.1)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["duckdb", "postgresql"])
def warehouse_config(request: pytest.FixtureRequest) -> WarehouseConfig:
    fixture = "duckdb_warehouse" if request.param == "duckdb" else "postgres_warehouse"
    config: WarehouseConfig = request.getfixturevalue(fixture)
    return config


def seed_users(make_user: Any, users: list[int], per_user: int, *, rng: random.Random) -> list[int]:
    """Each user made, with ``per_user`` generations on the shard that owns it (shard1 below 1000, else shard2)."""
    for user in users:
        make_user(user)
    ids = seed_content("shard1", [u for u in users if u < 1000], per_user, rng=rng)
    return ids + seed_content("shard2", [u for u in users if u >= 1000], per_user, rng=rng)


def seed_content(alias: str, users: list[int], per_user: int, *, rng: random.Random, days: int = 20) -> list[int]:
    """Generations over ``days`` days (various statuses, models, latencies, sizes) and their usage events."""
    generations, events = [], []
    for user in users:
        for _ in range(per_user):
            created = DAY0 + timedelta(days=rng.randrange(days), seconds=rng.randrange(86400))
            status = rng.choice(STATUSES)
            done = status == "succeeded"
            gid = new_id()
            generations.append(
                Generation(
                    id=gid,
                    user_id=user,
                    prompt="p" * rng.randrange(5, 60),
                    status=status,
                    output=("é" * rng.randrange(0, 300)) if done else "",
                    error="boom" if status == "failed" else "",
                    model_name=rng.choice(MODELS) if status != "queued" else "",
                    prompt_tokens=rng.randrange(1, 50),
                    completion_tokens=rng.randrange(0, 200) if done else 0,
                    total_ms=rng.uniform(50, 3000) if done else None,
                    created_at=created,
                )
            )
            events.append(
                UsageEvent(user_id=user, kind="generation_requested", generation_id=gid, tokens=0, created_at=created)
            )
            if done:
                events.append(
                    UsageEvent(
                        user_id=user, kind="generation_completed", generation_id=gid, tokens=50, created_at=created
                    )
                )
    copy_into(alias, generations)
    copy_into(alias, events)
    return [g.id for g in generations]
