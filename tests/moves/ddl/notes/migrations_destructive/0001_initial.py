from __future__ import annotations

from django.db import migrations, models

import shardrouter.ids


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="Note",
            fields=[
                (
                    "id",
                    models.BigIntegerField(
                        default=shardrouter.ids.new_id, editable=False, primary_key=True, serialize=False
                    ),
                ),
                ("user_id", models.BigIntegerField(db_index=True)),
                ("text", models.CharField(max_length=200)),
            ],
            options={
                "abstract": False,
                "constraints": [models.UniqueConstraint(fields=("id", "user_id"), name="ddlnotes_note_shard_identity")],
            },
        ),
    ]
