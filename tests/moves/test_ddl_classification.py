"""Which migration operations a live move can follow: the classification `migrate_shards` relies on."""

from __future__ import annotations

import pytest
from django.db import migrations, models
from django.db.migrations.state import ProjectState
from django.db.models import Value

from migrations_tooling.ddl import Effect, classify, migration_waves
from shardrouter.errors import MigrationRefused

ADDITIVE = [
    (migrations.AddField("note", "colour", models.CharField(max_length=9, null=True)), Effect.ADD_COLUMN),
    (migrations.AddIndex("note", models.Index(fields=["user_id"], name="n_u")), Effect.SAFE),
    (migrations.RemoveIndex("note", "n_u"), Effect.SAFE),
    (migrations.AlterModelOptions("note", {"ordering": ["id"]}), Effect.SAFE),
    (migrations.CreateModel("Tag", [("id", models.BigIntegerField(primary_key=True))]), Effect.NEW_TABLE),
]
REFUSED = [
    migrations.AddField("note", "size", models.IntegerField(default=0)),  # NOT NULL
    migrations.AddField("note", "size", models.IntegerField(null=True, db_default=Value(1))),
    migrations.RemoveField("note", "text"),
    migrations.RenameField("note", "text", "body"),
    migrations.AlterField("note", "text", models.TextField()),
    migrations.DeleteModel("Note"),
    migrations.RenameModel("Note", "Memo"),
    migrations.AlterModelTable("note", "memo"),
    migrations.AddConstraint("note", models.CheckConstraint(condition=models.Q(id__gt=0), name="pos")),
    migrations.RunSQL("TRUNCATE ddlnotes_note"),
    migrations.RunPython(migrations.RunPython.noop),
]


@pytest.mark.parametrize(("operation", "effect"), ADDITIVE, ids=lambda x: getattr(x, "describe", str)())
def test_additive_operations_can_run_during_a_move(
    operation: migrations.operations.base.Operation, effect: Effect
) -> None:
    found, table, _why = classify(operation, ProjectState(), "ddlnotes")
    assert found == effect
    assert table in ("ddlnotes_note", "ddlnotes_tag")


@pytest.mark.parametrize("operation", REFUSED, ids=lambda op: op.describe())
def test_operations_that_change_existing_rows_or_columns_are_refused(
    operation: migrations.operations.base.Operation,
) -> None:
    found, table, why = classify(operation, ProjectState(), "ddlnotes")
    assert found == Effect.UNSAFE
    assert why
    raw = isinstance(operation, migrations.RunSQL | migrations.RunPython)
    assert (table is None) == raw  # raw SQL/Python may touch any table of its app


def test_subscribers_are_migrated_in_an_earlier_wave_than_their_publishers() -> None:
    waves = migration_waves(["default", "shard1", "shard2", "shard3"], {("shard2", "shard1"), ("shard3", "shard2")})
    assert waves == [["default", "shard3"], ["shard2"], ["shard1"]]


def test_moves_replicating_both_ways_between_two_databases_have_no_safe_order() -> None:
    with pytest.raises(MigrationRefused, match="both directions"):
        migration_waves(["shard1", "shard2"], {("shard2", "shard1"), ("shard1", "shard2")})
