"""Destructive: drops a column of a moving table (refused during a move unless --on-ddl stop)."""

from __future__ import annotations

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("ddlnotes", "0001_initial")]

    operations = [migrations.RemoveField(model_name="note", name="text")]
