"""ASGI entry point (uvicorn/daphne quantumquill.asgi)."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantumquill.settings")

application = get_asgi_application()

# As in wsgi.py: a Redis Cluster that is unreachable, or is not a cluster, stops the server at start-up.
from apps.platform.cluster_cache import verify_cluster_caches  # noqa: E402  (needs the app registry)

verify_cluster_caches(settings.CACHES)
