"""System checks of the move engine (IDs migrations_tooling.W001...)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Tags, Warning, register
from django.db import DatabaseError

from shardrouter.conf import get_settings as shardrouter_settings

from . import direct  # noqa: F401 - registers the direct-connection checks
from .ddl import uneven_moves
from .guards import GUARD_PATH


@register()
def check_map_edit_guard(app_configs: Iterable[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    guards = getattr(settings, "SHARDROUTER", {}).get("MAP_EDIT_GUARDS", [])
    if GUARD_PATH in guards:
        return []
    return [
        Warning(
            "Manual shard-map edits are not checked against live data moves, so `shardmap assign` could re-route "
            "a range in the middle of a move.",
            hint=f"Add {GUARD_PATH!r} to SHARDROUTER['MAP_EDIT_GUARDS'].",
            id="migrations_tooling.W001",
        )
    ]


@register(Tags.database)
def check_migrations_even_across_moves(
    app_configs: Iterable[Any] | None = None, databases: Iterable[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """A move between databases migrated differently stops replicating or copies into a different schema."""
    if not databases or shardrouter_settings().control_database not in databases:
        return []
    try:
        found = uneven_moves()
    except DatabaseError:
        return []  # no move tables yet, or a database that does not answer: other checks and commands say so
    messages: list[CheckMessage] = []
    for move, pending in found:
        sides = "; ".join(
            f"{alias}: {', '.join(sorted(names)[:5]) or 'none'}{' ...' if len(names) > 5 else ''}"
            for alias, names in pending.items()
        )
        messages.append(
            Warning(
                f"Move {move.id} {move.source} -> {move.target} ({move.phase}) runs between databases with "
                f"different unapplied migrations ({sides}); replication can stop on a column one side lacks.",
                hint="Run `manage.py migrate_shards` (it orders additive migrations around the move and refuses "
                "the others, naming the options).",
                obj=move,
                id="migrations_tooling.W002",
            )
        )
    return messages
