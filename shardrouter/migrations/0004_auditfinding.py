"""The sharding-readiness audit's findings: counts per (kind, model, call site), added to by every process.

Created with SQL, like the map and the leases, so a test-database flush leaves
it alone and ``shardaudit reset`` is the only way to empty it.
"""

from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("shardrouter", "0003_idworkerlease_last_ms")]

    operations = [
        migrations.RunSQL(
            """
            CREATE TABLE IF NOT EXISTS shardrouter_auditfinding (
                kind varchar(40) NOT NULL,
                model varchar(200) NOT NULL,
                call_site varchar(500) NOT NULL,
                count bigint NOT NULL DEFAULT 0,
                example text NOT NULL DEFAULT '',
                first_seen timestamptz NOT NULL DEFAULT now(),
                last_seen timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (kind, model, call_site)
            )
            """,
            "DROP TABLE IF EXISTS shardrouter_auditfinding",
        ),
    ]
