"""Additive: a nullable column and an index (safe during a move)."""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ddlnotes", "0001_initial")]

    operations = [
        migrations.AddField(model_name="note", name="colour", field=models.CharField(max_length=20, null=True)),
        migrations.AddIndex(model_name="note", index=models.Index(fields=["user_id", "text"], name="note_user_text")),
    ]
