"""Create shard map v1: the whole keyspace on the control database (monolith mode).

A live migration starts here: later versions move ranges out to shards.
"""

from __future__ import annotations

from django.db import migrations

KEYSPACE_END = 2**63 - 1


def create_initial_map(apps, schema_editor):  # type: ignore[no-untyped-def]
    Revision = apps.get_model("shardrouter", "ShardMapRevision")
    alias = schema_editor.connection.alias
    if not Revision.objects.using(alias).exists():
        Revision.objects.using(alias).create(
            version=1,
            ranges=[{"lo": 0, "hi": KEYSPACE_END, "alias": alias, "read_alias": alias}],
            reason="initial map: monolith mode, every user on the control database",
        )


class Migration(migrations.Migration):
    dependencies = [("shardrouter", "0001_initial")]

    operations = [migrations.RunPython(create_initial_map, migrations.RunPython.noop)]
