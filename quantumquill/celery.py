"""The Celery application; tasks live in each app's ``tasks.py``.

Every worker also runs the generation sweeper (``apps.content.sweeper``) in
its main process, so that stranded generations heal wherever workers run.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, bootsteps

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quantumquill.settings")

app = Celery("quantumquill")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


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
