from __future__ import annotations

from django.apps import AppConfig


class SecurityConfig(AppConfig):
    name = "apps.security"
    label = "security"
    verbose_name = "Security"

    def ready(self) -> None:
        from . import schema  # noqa: F401 - registers the token scheme with drf-spectacular
