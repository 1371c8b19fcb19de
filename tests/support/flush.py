"""A transactional test's teardown flush that keeps what ``post_migrate`` made, unless the test changed it.

Django empties every table after a ``transaction=True`` test (the ``flush`` command) and then sends
``post_migrate`` again, whose receivers (contenttypes and auth, the only ones in this project) re-create every
content type and permission row by row: 260-460 ms per test on the control database, against 40-75 ms for the
TRUNCATE itself. Those rows are the same after every test that does not touch them, so here the flush empties
every other table and keeps ``django_content_type`` and ``auth_permission``. The first flush of each database is
Django's own (empty everything, send ``post_migrate``); a digest of the two tables right after it says, at every
later flush, whether a test changed them, and only then does the flush run as Django's again. Either way the next test finds empty tables and the full set of
content types and permissions, as with Django's own teardown; only their IDs no longer change from test to
test (nothing may rely on them).

Tests with ``available_apps`` or ``serialized_rollback`` keep Django's own teardown. ``post_migrate``
receivers other than Django's two would write rows this flush does not restore: ``tests/test_flush.py`` fails
when one appears.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.color import no_style
from django.db import connections
from django.test import TransactionTestCase

# What post_migrate writes: Django's create_contenttypes and create_permissions.
POST_MIGRATE_TABLES = ("django_content_type", "auth_permission")
POST_MIGRATE_RECEIVERS = {
    "django.contrib.contenttypes.management.create_contenttypes",
    "django.contrib.auth.management.create_permissions",
}


class KeptTables:
    """The post_migrate tables' digest per database, and the flush that keeps those tables when it can."""

    def __init__(self) -> None:
        self.digests: dict[str, str | None] = {}

    def digest(self, alias: str) -> str | None:
        """A digest of the post_migrate tables' rows on ``alias`` (None: the database has none of them)."""
        tables = self._kept(alias)
        if not tables:
            return None
        parts = " || ".join(
            f"(SELECT coalesce(string_agg(t::text, ',' ORDER BY t::text), '') FROM {table} t)" for table in tables
        )
        with connections[alias].cursor() as cursor:
            cursor.execute(f"SELECT md5({parts})")
            return str(cursor.fetchone()[0])

    def remember(self, alias: str) -> None:
        self.digests[alias] = self.digest(alias)

    def flush(self, alias: str) -> None:
        """Empty every table of ``alias``; the post_migrate tables only if a test changed them."""
        if alias in self.digests:
            connection = connections[alias]
            kept = self._kept(alias)
            tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
            sql = connection.ops.sql_flush(no_style(), [t for t in tables if t not in kept], reset_sequences=False)
            connection.ops.execute_sql_flush(sql)
            if not kept or self.digest(alias) == self.digests[alias]:
                return
        # The first flush of each database, or a test changed the tables: Django's own, then its digest.
        call_command("flush", verbosity=0, interactive=False, database=alias, reset_sequences=False)
        self.remember(alias)  # what post_migrate makes (the IDs change each time it makes them)

    def _kept(self, alias: str) -> list[str]:
        existing = set(connections[alias].introspection.table_names(include_views=False))
        return [table for table in POST_MIGRATE_TABLES if table in existing]


def _fixture_teardown(kept_tables: KeptTables, original: Any) -> Any:
    def teardown(testcase: TransactionTestCase) -> None:
        if testcase.available_apps is not None or testcase.serialized_rollback:
            original(testcase)
            return
        for alias in testcase._databases_names(include_mirrors=False):  # type: ignore[attr-defined]
            kept_tables.flush(alias)

    return teardown


@pytest.fixture(scope="session")
def kept_post_migrate_tables() -> Iterator[KeptTables]:
    """Installs the flush above for the rest of the session (requested by every database test)."""
    kept_tables = KeptTables()
    original = TransactionTestCase._fixture_teardown
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TransactionTestCase, "_fixture_teardown", _fixture_teardown(kept_tables, original))
        yield kept_tables
