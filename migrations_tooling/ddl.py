"""Schema migrations during a live move: which are safe, in what order, and what happens to the rest.

Logical replication carries rows, not schema, and the subscriber applies each
row by column *name*: a row may lack a column the subscriber has (it gets the
column's default, NULL), but a row with a column the subscriber lacks stops the
apply worker. So a change that only *adds* something optional can be applied
while the move runs, subscriber first:

* a new nullable column without a database default (``AddField`` with
  ``null=True``): on the subscriber first, rows without it still apply; then
  on the publisher, whose rows now carry it, and the subscriber has it;
* a new, dropped or renamed index (``AddIndex``, ``RemoveIndex``,
  ``RenameIndex``) and options Django keeps only in its state: rows are
  unaffected;
* a new table (``CreateModel``): replication does not see it until it is
  added to the publication; a sharded one is then added to the move's channel
  (fence trigger, replica identity, publication with the range's filter, and
  the subscription refreshed so its rows are copied) and the move carries it.

Everything else changes what existing rows look like on one side before the
other: dropping or renaming a column (the publisher keeps sending the old name,
or the subscriber loses a column rows still carry), changing a type, a new
``NOT NULL`` column, constraints (replicated rows may break them), ``RunSQL``
and ``RunPython`` of a sharded app (anything, including ``TRUNCATE``, which
is never replicated) and unapplying a migration. Those are refused while a move
of the affected table is active on that database, unless the operator chooses
``--on-ddl stop``: the move is paused at a safe point (``schema_changes``) and
its copy restarts after the migration.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import psycopg
from django.conf import settings
from django.db import connections
from django.db.migrations import operations as ops
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.migration import Migration
from django.db.migrations.operations.base import Operation
from django.db.migrations.state import ProjectState
from django.db.models.fields import NOT_PROVIDED

from shardrouter.conf import get_settings as shardrouter_settings
from shardrouter.errors import MigrationRefused
from shardrouter.migrating import MigrationPlans, MigrationSchedule, Say

from . import phases
from .errors import MoveError
from .models import ACTIVE_PHASES, MoveRange
from .progress import Reporter
from .schema import sharded_tables
from .schema_changes import move_add_tables, move_pause_for_ddl, move_resume_after_ddl, tables_missing_from_move
from .selectors import channel_for


class Effect(StrEnum):
    SAFE = "safe"  # rows look the same on both sides whatever the order (indexes, state-only options)
    ADD_COLUMN = "add column"  # safe subscriber first
    NEW_TABLE = "new table"  # safe; a sharded one is added to the move
    UNSAFE = "unsafe"


# Operations that never change what a replicated row looks like.
_SAFE_OPERATIONS: tuple[type[Operation], ...] = (
    ops.AddIndex,
    ops.RemoveIndex,
    ops.RenameIndex,
    ops.AlterModelOptions,
    ops.AlterModelManagers,
)


@dataclass(frozen=True)
class Change:
    """One operation of one migration, as a live move sees it."""

    migration: str  # app_label.name
    operation: str  # Django's description of it
    table: str | None  # None: cannot tell (RunSQL, RunPython)
    app_label: str
    effect: Effect
    why: str

    def line(self) -> str:
        return f"{self.migration}: {self.operation} ({self.why})"


def _model_table(state: ProjectState, app_label: str, model_name: str) -> str:
    model = state.models.get((app_label, model_name.lower()))
    table = model.options.get("db_table") if model is not None else None
    return str(table or f"{app_label}_{model_name.lower()}")


def classify(operation: Operation, state: ProjectState, app_label: str) -> tuple[Effect, str | None, str]:
    """What ``operation`` (applied forwards on top of ``state``) does to a moving table: effect, table, why."""
    model_name = getattr(operation, "model_name", None) or getattr(operation, "name", None)
    table = _model_table(state, app_label, str(model_name)) if model_name else None
    if isinstance(operation, _SAFE_OPERATIONS):
        return Effect.SAFE, table, "does not change rows"
    if isinstance(operation, ops.AddField):
        field: Any = operation.field
        if field.many_to_many:
            return Effect.UNSAFE, table, "a many-to-many field adds a table of links the move does not carry"
        if not field.null:
            return Effect.UNSAFE, table, "a NOT NULL column: rows replicated without it would be refused"
        if getattr(field, "db_default", NOT_PROVIDED) is not NOT_PROVIDED:
            return Effect.UNSAFE, table, "a database default: existing rows would differ between the two sides"
        return Effect.ADD_COLUMN, table, "a nullable column: added where replication arrives first"
    if isinstance(operation, ops.CreateModel):
        return Effect.NEW_TABLE, table, "a new table"
    if isinstance(operation, ops.RunSQL | ops.RunPython):
        return Effect.UNSAFE, None, "raw SQL or Python: it may change or truncate any table"
    return Effect.UNSAFE, table, f"{type(operation).__name__} changes existing rows or columns"


def plan_changes(steps: list[tuple[Migration, bool]], loader: MigrationLoader) -> list[Change]:
    """Classify every operation of a database's pending migrations."""
    changes: list[Change] = []
    for migration, backwards in steps:
        key = (migration.app_label, migration.name)
        name = f"{migration.app_label}.{migration.name}"
        if backwards:
            changes.append(
                Change(name, "unapply", None, migration.app_label, Effect.UNSAFE, "unapplying undoes a change")
            )
            continue
        state = loader.project_state(key, at_end=False)
        for operation in migration.operations:
            effect, table, why = classify(operation, state, migration.app_label)
            changes.append(Change(name, operation.describe(), table, migration.app_label, effect, why))
            operation.state_forwards(migration.app_label, state)
    return changes


def _sharded_app_labels() -> set[str]:
    return set(shardrouter_settings().sharded_apps)


def affects(change: Change, moved_tables: set[str], sharded_apps: set[str]) -> bool:
    """Whether a change touches what a move carries (a moved table; for raw SQL/Python, a sharded app)."""
    if change.table is None:
        return change.app_label in sharded_apps
    return change.table in moved_tables


def active_moves() -> list[MoveRange]:
    """Moves that own their range; none before the move engine's own tables exist (a first migrate)."""
    alias = shardrouter_settings().control_database
    if "migrations_tooling_moverange" not in connections[alias].introspection.table_names():
        return []
    return list(MoveRange.objects.filter(phase__in=ACTIVE_PHASES).order_by("id"))


def migration_waves(aliases: Iterable[str], before: set[tuple[str, str]]) -> list[list[str]]:
    """Waves of aliases such that for each (a, b) in ``before`` a is in an earlier wave than b."""
    left = list(aliases)
    waves: list[list[str]] = []
    while left:
        wave = [a for a in left if not any(b == a and x in left for x, b in before)]
        if not wave:
            cycle = sorted({f"{x} before {b}" for x, b in before if x in left and b in left})
            raise MigrationRefused(
                "Moves replicate in both directions between these databases, so no order keeps replication "
                f"flowing ({'; '.join(cycle)}). Finish one of the moves first, or migrate with --on-ddl stop."
            )
        waves.append(wave)
        left = [a for a in left if a not in wave]
    return waves


class _SayReporter(Reporter):
    def __init__(self, say: Say) -> None:
        self.say = say

    def info(self, message: str) -> None:
        self.say(message)

    def warning(self, message: str) -> None:
        self.say(f"Warning: {message}")


def _refusal(move: MoveRange, alias: str, changes: list[Change]) -> str:
    shown = "\n".join(f"    {c.line()}" for c in changes[:8])
    more = f"\n    ... and {len(changes) - 8} more" if len(changes) > 8 else ""
    return (
        f"Move {move.id} {move.source} -> {move.target} ({move.phase}) is moving tables these migrations on "
        f"{alias} would change in a way replication cannot follow:\n{shown}{more}\n"
        f"  Options: finish the move (`manage.py shardmove complete {move.id}` once writes are switched), cancel it "
        f"(`manage.py shardmove cancel {move.id}`), or re-run with `--on-ddl stop`, which pauses the move at a safe "
        "point, migrates, and restarts its copy."
    )


def coordinate_migrations(plans: MigrationPlans, *, on_ddl: str, dry_run: bool, say: Say) -> MigrationSchedule:
    """``SHARDROUTER["MIGRATION_COORDINATOR"]``: order, refuse or pause around the active moves (see above)."""
    moves = active_moves()
    if not moves:
        return MigrationSchedule(waves=[list(plans)])
    loader = MigrationLoader(None, ignore_no_migrations=True)
    changes = {alias: plan_changes(steps, loader) for alias, steps in plans.items() if steps}
    moved = {t.name for t in sharded_tables()}
    sharded_apps = _sharded_app_labels()
    refusals: list[str] = []
    to_pause: list[MoveRange] = []
    before: set[tuple[str, str]] = set()
    notes: list[str] = []
    for move in moves:
        paused = move.step == phases.PAUSED_FOR_DDL
        unsafe: dict[str, list[Change]] = {}
        touched = False
        for alias in (move.source, move.target):
            mine = [
                c for c in changes.get(alias, []) if affects(c, moved, sharded_apps) or c.effect == Effect.NEW_TABLE
            ]
            touched = touched or bool(mine)
            bad = [c for c in mine if c.effect == Effect.UNSAFE]
            if bad:
                unsafe[alias] = bad
        if paused:
            notes.append(f"Move {move.id} is paused for a schema change; its copy restarts after the migration.")
            continue
        if unsafe and on_ddl == "stop":
            try:
                phases.require_phase(move, phases.PAUSE_FOR_DDL)
            except MoveError as exc:
                refusals.append(f"{exc}")
                continue
            to_pause.append(move)
            notes.append(
                f"Move {move.id} {move.source} -> {move.target} will be paused (--on-ddl stop): its copy restarts "
                "after the migration."
            )
        elif unsafe:
            refusals += [_refusal(move, alias, found) for alias, found in unsafe.items()]
        elif touched:
            channel = channel_for(move)
            if channel is not None:
                before.add((channel.subscriber, channel.publisher))
                notes.append(
                    f"Move {move.id} replicates {channel.publisher} -> {channel.subscriber}: additive changes are "
                    f"applied to {channel.subscriber} first, then {channel.publisher}; the move continues."
                )
    if refusals:
        raise MigrationRefused("Nothing was migrated.\n" + "\n".join(refusals))
    waves = migration_waves(plans, before)
    if dry_run:
        return MigrationSchedule(waves=waves, notes=notes)
    reporter = _SayReporter(say)

    def prepare() -> None:
        for move in to_pause:
            try:
                move_pause_for_ddl(move, reporter=reporter)
            except MoveError as exc:
                raise MigrationRefused(
                    f"Nothing was migrated: {exc} Moves paused already stay paused; re-run once it is fixed."
                ) from exc

    def finish() -> None:
        errors: list[str] = []
        for move in active_moves():
            try:
                if move.step == phases.PAUSED_FOR_DDL:
                    move_resume_after_ddl(move, reporter=reporter)
                else:
                    # Every sharded table both sides have, also one an interrupted earlier run left out.
                    missing = tables_missing_from_move(move)
                    if missing:
                        move_add_tables(move, missing, reporter=reporter)
            except (MoveError, psycopg.Error) as exc:
                errors.append(f"move {move.id}: {exc}")
        if errors:
            raise MigrationRefused("The migrations were applied, but:\n" + "\n".join(errors))

    return MigrationSchedule(waves=waves, notes=notes, prepare=prepare, finish=finish)


def unapplied_migrations(alias: str) -> set[str]:
    """The migrations of sharded apps ``migrate`` would apply on ``alias`` now (``app.name``)."""
    sharded_apps = _sharded_app_labels()
    try:
        executor = MigrationExecutor(connections[alias])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    finally:
        connections[alias].close()
    return {f"{m.app_label}.{m.name}" for m, _ in plan if m.app_label in sharded_apps}


def uneven_moves() -> list[tuple[MoveRange, dict[str, set[str]]]]:
    """Active moves with migrations of sharded apps unapplied on one of their two databases but not the other."""
    found: list[tuple[MoveRange, dict[str, set[str]]]] = []
    for move in active_moves():
        if move.source not in settings.DATABASES or move.target not in settings.DATABASES:
            continue
        pending = {alias: unapplied_migrations(alias) for alias in (move.source, move.target)}
        if pending[move.source] != pending[move.target]:
            found.append((move, pending))
    return found
