"""shardrouter's control tables.

Both are unmanaged: they hold coordination state of the running system (the
map every process routes by, the worker IDs live processes hold), not
application data, so ``manage.py flush`` and test-database flushes must never
empty them. Their schema is therefore created here with explicit SQL.
"""

from __future__ import annotations

from django.db import migrations, models

CREATE = """
CREATE TABLE IF NOT EXISTS shardrouter_shardmaprevision (
    version bigint PRIMARY KEY CHECK (version > 0),
    ranges jsonb NOT NULL,
    reason varchar(500) NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS shardrouter_idworkerlease (
    worker_id smallint PRIMARY KEY CHECK (worker_id BETWEEN 0 AND 1023),
    owner varchar(200) NOT NULL,
    expires_at timestamptz NOT NULL
);
"""
DROP = "DROP TABLE IF EXISTS shardrouter_idworkerlease; DROP TABLE IF EXISTS shardrouter_shardmaprevision;"


class Migration(migrations.Migration):
    initial = True

    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.RunSQL(CREATE, DROP),
        migrations.CreateModel(
            name="IdWorkerLease",
            fields=[
                ("worker_id", models.SmallIntegerField(primary_key=True, serialize=False)),
                ("owner", models.CharField(max_length=200)),
                ("expires_at", models.DateTimeField()),
            ],
            options={"managed": False},
        ),
        migrations.CreateModel(
            name="ShardMapRevision",
            fields=[
                ("version", models.PositiveBigIntegerField(primary_key=True, serialize=False)),
                ("ranges", models.JSONField(help_text="[{lo, hi, alias, read_alias}, ...] sorted by lo")),
                ("reason", models.CharField(blank=True, max_length=500)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={"ordering": ["-version"], "managed": False},
        ),
    ]
