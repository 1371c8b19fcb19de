"""The Celery application; tasks live in each app's ``tasks.py``.

Every worker also runs the generation sweeper (``apps.content.sweeper``) in
its main process, so that stranded generations heal wherever workers run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from logging.config import dictConfig
from typing import Any

from celery import Celery, bootsteps, signals
from django.conf import settings

# The worker's /metrics (every pool process summed): QQ_WORKER_METRICS_PORT. Its pool processes write their
# samples to PROMETHEUS_MULTIPROC_DIR (a fresh folder unless set), which must be set before prometheus_client
# is first imported.
WORKER_METRICS_PORT_ENV = "QQ_WORKER_METRICS_PORT"
_own_metrics_dir = ""
if os.environ.get(WORKER_METRICS_PORT_ENV) and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _own_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="qq-worker-metrics-")

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantumquill.settings")

app = Celery("quantumquill")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def _django_logging(**_: Any) -> None:
    """The worker logs like the web processes (Django's LOGGING: JSON lines with the request ID)."""
    dictConfig(settings.LOGGING)


@signals.worker_init.connect
def _serve_worker_metrics(**_: Any) -> None:
    port = os.environ.get(WORKER_METRICS_PORT_ENV, "")
    if not port:
        return
    # Imported here, not at the top: `import quantumquill` (the devstack command, settings) must not need the apps.
    from apps.observability import exposition

    exposition.prepare_multiprocess_dir()
    exposition.serve_in_background(int(port), os.environ.get("QQ_WORKER_METRICS_HOST", "127.0.0.1"))


@signals.worker_shutdown.connect
def _remove_own_metrics_dir(**_: Any) -> None:
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)


class GenerationSweeperStep(bootsteps.StartStopStep):
    """Starts the sweeper thread with the worker and stops it on shutdown (interval 0: off)."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.sweeper: Any = None

    def start(self, worker: Any) -> None:
        from apps.content.sweeper import Sweeper, sweep_interval

        interval = sweep_interval()
        if interval > 0:
            self.sweeper = Sweeper(interval)
            self.sweeper.start()

    def stop(self, worker: Any) -> None:
        if self.sweeper is not None:
            self.sweeper.stop()


app.steps["worker"].add(GenerationSweeperStep)
