"""The shard map as stored in the control database: read the newest version, write a new one.

Apart from ``shardmap`` (the per-process cache every query consults, which reads the control database with
its own connection) because these go through the ``ShardMapRevision`` model: the router, which the models'
managers depend on, never imports the models.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings
from django.db import IntegrityError, transaction

from .conf import get_settings
from .errors import ShardMapConflict
from .keyspace import ShardMap, ShardRange, merge_adjacent, validate_ranges
from .models import ShardMapRevision
from .shardmap import shard_map_cache, snapshot_from_row


def load_map_from_database() -> ShardMap:
    """The newest map, read through Django's control connection (commands, checks, tests)."""
    alias = get_settings().control_database
    latest = ShardMapRevision.objects.using(alias).order_by("-version").values_list("version", "ranges").first()
    return snapshot_from_row(latest)


def apply_map(
    ranges: Sequence[ShardRange], *, expected_version: int, reason: str, known_aliases: Sequence[str] | None = None
) -> ShardMap:
    """Validate ``ranges`` and store them as version ``expected_version + 1``.

    All or nothing: an invalid map raises ``ShardMapError`` and nothing is
    written; a concurrent change raises ``ShardMapConflict`` (re-read and retry).
    """
    aliases = list(known_aliases) if known_aliases is not None else list(settings.DATABASES)
    cleaned = merge_adjacent(ranges)
    validate_ranges(cleaned, aliases)
    alias = get_settings().control_database
    new_version = expected_version + 1
    try:
        with transaction.atomic(using=alias):
            latest = ShardMapRevision.objects.using(alias).select_for_update().order_by("-version").first()
            if latest is not None and latest.version != expected_version:
                raise ShardMapConflict(
                    f"The shard map changed while this edit was prepared (now v{latest.version}, edit based on "
                    f"v{expected_version}). Re-read it with `manage.py shardmap show` and apply again."
                )
            ShardMapRevision.objects.using(alias).create(
                version=new_version, ranges=[r.to_json() for r in cleaned], reason=reason[:500]
            )
    except IntegrityError as exc:
        raise ShardMapConflict(f"Shard map v{new_version} was written concurrently; re-read and apply again.") from exc
    shard_map_cache.invalidate()
    return ShardMap(new_version, tuple(cleaned))
