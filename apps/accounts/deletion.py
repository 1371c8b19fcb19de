"""Deleting an account everywhere: rows on every database, exported files, sessions, then the user.

During a live move the user's rows can exist on two databases at once (the
source and the copy on the target), so rows are deleted on *every* database
that may hold sharded rows, not only the one the shard map names. Each delete
rides out a cut-over freeze: a fence refusal is retried until the write buffer
runs out (then the error reaches the caller, and re-running finishes the job).
Deleting on the source first means replication can only carry deletes to the
copy, never re-insert what was removed there.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.apps import apps
from django.contrib.auth.models import User
from django.core.files.storage import storages
from django.db import DatabaseError, connections, transaction

from apps.exports.services import EXPORTS_STORAGE
from shardrouter.conf import get_settings
from shardrouter.shardkeys import shard_key_attname
from shardrouter.shardmap import current_map
from shardrouter.writes import fence_sqlstate

from .sessions import user_sessions_end

logger = logging.getLogger(__name__)

FENCE_RETRY_SECONDS = 0.05


@dataclass
class AccountDeletion:
    """What deleting one account removed: rows per database and table, files, sessions."""

    user_id: int
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    sessions: int = 0

    @property
    def row_count(self) -> int:
        return sum(sum(tables.values()) for tables in self.rows.values())


def sharded_tables() -> list[tuple[str, str]]:
    """(table, shard-key column) of every sharded model (sharded tables have no foreign keys between them)."""
    config = get_settings()
    tables: list[tuple[str, str]] = []
    for model in apps.get_models():
        attname = shard_key_attname(model)
        if attname is None or model._meta.app_label not in config.sharded_apps:
            continue
        field = model._meta.get_field(attname)
        column = getattr(field, "column", None) or attname
        tables.append((model._meta.db_table, str(column)))
    return sorted(tables)


def _delete_rows_on(alias: str, user_id: int, *, budget: float) -> dict[str, int]:
    """Delete the user's rows from every sharded table on ``alias`` in one transaction, retrying fence refusals."""
    deadline = time.monotonic() + budget
    tables = sharded_tables()
    while True:
        try:
            counts: dict[str, int] = {}
            with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
                for table, column in tables:
                    # A database still being set up for a move may lack a table.
                    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [table])
                    if not cursor.fetchone()[0]:
                        continue
                    cursor.execute(f'DELETE FROM "{table}" WHERE "{column}" = %s', [user_id])
                    counts[table] = cursor.rowcount
            return counts
        except DatabaseError as exc:
            if fence_sqlstate(exc) is None or time.monotonic() > deadline:
                raise
            time.sleep(FENCE_RETRY_SECONDS)


def _export_keys(alias: str, user_id: int) -> list[str]:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT to_regclass('exports_export') IS NOT NULL")
        if not cursor.fetchone()[0]:
            return []
        cursor.execute("SELECT storage_key FROM exports_export WHERE user_id = %s", [user_id])
        return [row[0] for row in cursor.fetchall()]


def _stored_files(prefix: str) -> list[str]:
    storage = storages[EXPORTS_STORAGE]
    found: list[str] = []
    try:
        folders, files = storage.listdir(prefix)
    except FileNotFoundError:
        return found
    found += [f"{prefix}/{name}" for name in files]
    for folder in folders:
        found += _stored_files(f"{prefix}/{folder}")
    return found


def user_databases(user_id: int) -> list[str]:
    """Every database that may hold the user's rows: the write database first, then every other one."""
    write_alias = current_map().write_alias(user_id)
    others = sorted(alias for alias in get_settings().shard_databases if alias != write_alias)
    return [write_alias, *others]


def account_delete(*, user: User, session_key: str | None = None) -> AccountDeletion:
    """Delete ``user`` and everything of theirs; safe to re-run if it stops half-way.

    Files go after the rows that point at them are gone (so no page links a
    missing file), and the user row goes last (so a failure leaves an account
    that can be deleted again, not orphaned rows).
    """
    user_id = int(user.pk)
    result = AccountDeletion(user_id=user_id)
    budget = get_settings().write_buffer_seconds
    keys: set[str] = set()
    for alias in user_databases(user_id):
        keys.update(_export_keys(alias, user_id))
        result.rows[alias] = _delete_rows_on(alias, user_id, budget=budget)
    storage = storages[EXPORTS_STORAGE]
    keys.update(_stored_files(f"exports/{user_id}"))
    for key in sorted(keys):
        storage.delete(key)
        result.files.append(key)
    result.sessions = user_sessions_end(user_id=user_id)
    user.delete()
    logger.info(
        "Account %s deleted: %d rows (%s), %d files, %d sessions",
        user_id,
        result.row_count,
        ", ".join(f"{alias}: {sum(t.values())}" for alias, t in result.rows.items()),
        len(result.files),
        result.sessions,
    )
    return result
