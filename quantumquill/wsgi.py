"""WSGI entry point (gunicorn quantumquill.wsgi)."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantumquill.settings")

application = get_wsgi_application()

# An app server on a Redis Cluster that is unreachable, or is not a cluster, stops here with the reason
# (gunicorn reports the worker failing to boot), instead of answering every signed-in request with 503.
from apps.platform.cluster_cache import verify_cluster_caches  # noqa: E402  (needs the app registry)

verify_cluster_caches(settings.CACHES)
