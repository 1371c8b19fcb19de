"""System checks of the move engine (IDs migrations_tooling.W001...)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning, register

from . import direct  # noqa: F401 - registers the direct-connection checks
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
