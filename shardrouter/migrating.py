"""How ``migrate_shards`` lets another component order or refuse migrations (live data moves do).

A *migration coordinator* (``SHARDROUTER["MIGRATION_COORDINATOR"]``, a dotted
path) sees every database's pending migrations before anything is applied. It
raises ``MigrationRefused`` with what to do instead, or returns a
``MigrationSchedule``: the order in which databases are migrated (waves; the
databases of one wave are migrated together, a wave starts when the previous
one has succeeded), work to do before the first wave and after the last. It is
also called when nothing is pending, so that a re-run can finish what an
interrupted run left (``finish``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.db.migrations.migration import Migration
from django.utils.module_loading import import_string

# alias -> the (migration, backwards) steps `migrate` would take there, in order.
MigrationPlans = dict[str, list[tuple[Migration, bool]]]
Say = Callable[[str], None]


def _nothing() -> None:
    return None


@dataclass(frozen=True)
class MigrationSchedule:
    waves: list[list[str]]
    notes: list[str] = field(default_factory=list)
    prepare: Callable[[], None] = _nothing
    finish: Callable[[], None] = _nothing


class MigrationCoordinator:
    """Signature of a coordinator (documentation; any callable with it will do)."""

    def __call__(self, plans: MigrationPlans, *, on_ddl: str, dry_run: bool, say: Say) -> MigrationSchedule:
        raise NotImplementedError


ON_DDL_CHOICES = ("refuse", "stop")


def default_schedule(plans: MigrationPlans) -> MigrationSchedule:
    return MigrationSchedule(waves=[list(plans)])


def migration_coordinator() -> Callable[..., MigrationSchedule]:
    """The configured coordinator, or one that migrates every database at once."""
    path = getattr(settings, "SHARDROUTER", {}).get("MIGRATION_COORDINATOR")
    if not path:
        return lambda plans, **_: default_schedule(plans)
    coordinator: Callable[..., MigrationSchedule] = import_string(path)
    return coordinator
