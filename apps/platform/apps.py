from __future__ import annotations

from django.apps import AppConfig


class PlatformConfig(AppConfig):
    """Platform pieces for stateless app servers: session engine, middleware, checks, session copy."""

    name = "apps.platform"
    label = "platform"
    verbose_name = "Platform"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the statelessness checks)
