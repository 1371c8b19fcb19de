from __future__ import annotations

from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    """Metrics, readiness, request logs and traces of the Django processes (docs/observability.md)."""

    name = "apps.observability"
    label = "observability"
    verbose_name = "Observability"

    def ready(self) -> None:
        from . import hooks, metrics, tracing

        metrics.prime()
        hooks.connect()
        tracing.configure_django_tracing()
