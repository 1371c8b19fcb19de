"""The Celery application; tasks live in each app's ``tasks.py``."""

from __future__ import annotations

import os
from logging.config import dictConfig
from typing import Any

from celery import Celery, signals
from django.conf import settings

from quantumquill.observability import exposition

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantumquill.settings")

app = Celery("quantumquill")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# The worker's /metrics (every pool process summed): QQ_WORKER_METRICS_PORT, with PROMETHEUS_MULTIPROC_DIR.
WORKER_METRICS_PORT_ENV = "QQ_WORKER_METRICS_PORT"


@signals.setup_logging.connect
def _django_logging(**_: Any) -> None:
    """The worker logs like the web processes (Django's LOGGING: JSON lines with the request ID)."""
    dictConfig(settings.LOGGING)


@signals.worker_init.connect
def _serve_worker_metrics(**_: Any) -> None:
    port = os.environ.get(WORKER_METRICS_PORT_ENV, "")
    if not port:
        return
    exposition.prepare_multiprocess_dir()
    exposition.serve_in_background(int(port), os.environ.get("QQ_WORKER_METRICS_HOST", "127.0.0.1"))
