"""Keep each worker ID's high-water mark: the last millisecond its holders may have used.

A process that takes over a worker ID waits until its clock passes this mark,
so a host whose clock lags can never repeat IDs of the previous holder.
"""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shardrouter", "0002_initial_map")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE shardrouter_idworkerlease ADD COLUMN IF NOT EXISTS last_ms bigint NOT NULL DEFAULT 0",
            "ALTER TABLE shardrouter_idworkerlease DROP COLUMN IF EXISTS last_ms",
        ),
        migrations.AddField(
            model_name="idworkerlease",
            name="last_ms",
            field=models.BigIntegerField(default=0),
        ),
    ]
