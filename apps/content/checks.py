"""System checks of the content app's configuration."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Warning, register


@register()
def check_contentgen_token(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if settings.CONTENTGEN.get("TOKEN"):
        return []
    return [
        Warning(
            "CONTENTGEN_TOKEN is not set: calls to the generation service carry no token, and a service "
            "started with one refuses them (every generation then fails).",
            hint="Set CONTENTGEN_TOKEN to the service's shared secret (the embedded stack generates one).",
            id="content.W001",
        )
    ]
