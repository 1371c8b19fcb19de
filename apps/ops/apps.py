from __future__ import annotations

from django.apps import AppConfig


class OpsConfig(AppConfig):
    """The operator console: read-only pages under /ops/ over the shard map and the live moves."""

    name = "apps.ops"
    label = "ops"
    verbose_name = "Operator console"
