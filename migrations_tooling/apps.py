from __future__ import annotations

from django.apps import AppConfig


class MigrationsToolingConfig(AppConfig):
    name = "migrations_tooling"
    verbose_name = "Live data moves"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks
