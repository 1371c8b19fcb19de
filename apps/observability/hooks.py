"""Where the metrics and the request ID meet the rest of the system: Django and Celery signals.

Celery: the web request's ID travels in each task's message headers
(``qq_request_id``) and is put back in place while the task runs, so the
worker's log lines carry it and the calls it makes to the generation service
send it on. Each task's end is logged as one JSON line.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import signals as celery_signals

from apps.platform.request_id import current_request_id
from shardrouter.signals import write_retried

from . import exposition, metrics

REQUEST_ID_HEADER = "qq_request_id"
logger = logging.getLogger("qq.task")
_started: dict[str, tuple[float, Any]] = {}


def connect() -> None:
    write_retried.connect(_on_write_retried, dispatch_uid="observability.write_retried")
    celery_signals.before_task_publish.connect(_add_request_id, dispatch_uid="observability.publish")
    celery_signals.task_prerun.connect(_task_started, dispatch_uid="observability.prerun")
    celery_signals.task_postrun.connect(_task_finished, dispatch_uid="observability.postrun")
    celery_signals.worker_process_shutdown.connect(_pool_process_exited, dispatch_uid="observability.exit")


def _on_write_retried(sender: object, *, alias: str, reason: str, **_: Any) -> None:
    metrics.shard_write_retries.labels(alias, reason).inc()


def _add_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = current_request_id.get()
    if headers is not None and request_id != "-" and REQUEST_ID_HEADER not in headers:
        headers[REQUEST_ID_HEADER] = request_id


def _task_started(task_id: str, task: Any, **_: Any) -> None:
    request_id = getattr(task.request, REQUEST_ID_HEADER, None) or (task.request.headers or {}).get(REQUEST_ID_HEADER)
    token = current_request_id.set(str(request_id)) if request_id else None
    _started[task_id] = (time.monotonic(), token)


def _task_finished(task_id: str, task: Any, state: str | None = None, **_: Any) -> None:
    started, token = _started.pop(task_id, (time.monotonic(), None))
    logger.info(
        "task",
        extra={
            "fields": {
                "task": task.name,
                "task_id": task_id,
                "state": state,
                "retries": task.request.retries,
                "duration_ms": round((time.monotonic() - started) * 1000, 2),
            }
        },
    )
    if token is not None:
        current_request_id.reset(token)


def _pool_process_exited(pid: int | None = None, **_: Any) -> None:
    if pid is not None:
        exposition.process_exited(pid)
