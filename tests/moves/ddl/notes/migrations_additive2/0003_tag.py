"""Additive: a new sharded table (the move carries it from then on)."""

from __future__ import annotations

from django.db import migrations, models

import shardrouter.ids


class Migration(migrations.Migration):
    dependencies = [("ddlnotes", "0002_colour")]

    operations = [
        migrations.CreateModel(
            name="Tag",
            fields=[
                (
                    "id",
                    models.BigIntegerField(
                        default=shardrouter.ids.new_id, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("user_id", models.BigIntegerField(db_index=True)),
                ("name", models.CharField(max_length=50)),
            ],
            options={
                "abstract": False,
                "constraints": [models.UniqueConstraint(fields=("id", "user_id"), name="ddlnotes_tag_shard_identity")],
            },
        ),
    ]
