"""The transactional tests' flush (tests/support/flush.py) leaves what Django's own flush leaves.

Every table empty, and the full set of content types and permissions, whether or not the test changed them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db.models.signals import post_migrate

from tests.conftest import ALL_DATABASES, raw_rows
from tests.support.flush import POST_MIGRATE_RECEIVERS, KeptTables

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)
POST_MIGRATE_IDS = "SELECT id FROM django_content_type UNION ALL SELECT id FROM auth_permission ORDER BY 1"


def post_migrate_rows() -> tuple[set[tuple[str, str]], set[tuple[str, str, str]]]:
    types = set(ContentType.objects.values_list("app_label", "model"))
    permissions = set(Permission.objects.values_list("content_type__app_label", "content_type__model", "codename"))
    return types, permissions


@pytest.fixture
def expected_rows() -> Iterator[tuple[set[tuple[str, str]], set[tuple[str, str, str]]]]:
    rows = post_migrate_rows()
    assert ("auth", "user") in rows[0], "the test database should start with post_migrate's content types"
    yield rows


def test_the_only_post_migrate_receivers_are_djangos_two() -> None:
    """A new receiver would write rows the flush does not restore when it keeps the two tables."""
    receivers = {f"{receiver.__module__}.{receiver.__qualname__}" for receiver in post_migrate._live_receivers(None)[0]}
    assert receivers == POST_MIGRATE_RECEIVERS


def test_an_untouched_flush_empties_the_tables_and_keeps_content_types_and_permissions(
    kept_post_migrate_tables: KeptTables, make_user: Any, expected_rows: object
) -> None:
    kept_post_migrate_tables.flush("default")  # the session's first flush of it, if no earlier test made one
    ids = raw_rows("default", POST_MIGRATE_IDS)
    make_user(42, "dora")

    kept_post_migrate_tables.flush("default")

    assert raw_rows("default", "SELECT count(*) FROM auth_user")[0][0] == 0
    assert post_migrate_rows() == expected_rows
    # Kept, not re-created: post_migrate would have given every row a new ID.
    assert raw_rows("default", POST_MIGRATE_IDS) == ids


def test_a_test_that_changed_them_gets_them_back_complete(
    kept_post_migrate_tables: KeptTables, expected_rows: object
) -> None:
    ContentType.objects.filter(app_label="auth", model="group").delete()  # and its permissions, by cascade
    extra = ContentType.objects.create(app_label="tests", model="stray")
    Permission.objects.create(content_type=extra, codename="stray", name="Stray")

    kept_post_migrate_tables.flush("default")

    assert post_migrate_rows() == expected_rows
    assert kept_post_migrate_tables.digests["default"] == kept_post_migrate_tables.digest("default")
