from __future__ import annotations

from django.apps import AppConfig


class NotesConfig(AppConfig):
    name = "tests.moves.ddl.notes"
    label = "ddlnotes"
    default_auto_field = "django.db.models.BigAutoField"
