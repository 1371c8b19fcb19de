"""Celery tasks of the content app. They take IDs only; the logic lives in ``jobs.py``."""

from __future__ import annotations

import uuid

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError

from shardrouter.context import shard_for
from shardrouter.errors import ShardMapError, ShardWriteUnavailable

from .generator import retry_delay
from .services import job_countdown

# Infrastructure trouble (not the service's answer): the claim was given back, retry the whole job.
_RETRY_ON = (SoftTimeLimitExceeded, DatabaseError, ShardWriteUnavailable, ShardMapError)
# Retries after the service's answer are bounded by the generation's time budget, not by Celery's count.
_UNBOUNDED = 1_000_000


@shared_task(
    bind=True,
    name="content.generation_run",
    acks_late=True,
    reject_on_worker_lost=True,
    # Retries of failed calls are budgeted on the generation itself (RETRY_BUDGET_SECONDS); this only
    # bounds a job that keeps meeting a broken database.
    max_retries=50,
    soft_time_limit=settings.CONTENTGEN["JOB_SOFT_TIME_LIMIT"],
    time_limit=settings.CONTENTGEN["JOB_TIME_LIMIT"],
)
def generation_run(self: Task, generation_id: int, user_id: int, dispatch: str | None = None) -> str:
    """Generate the text of one generation and store it on the owner's shard.

    ``dispatch`` names the job chain (messages sent before it existed carry none and are not checked).
    """
    from .jobs import generation_run_job

    token = uuid.UUID(dispatch) if dispatch else None
    try:
        with shard_for(user_id):
            outcome = generation_run_job(user_id=user_id, generation_id=generation_id, dispatch=token)
    except _RETRY_ON as exc:
        raise self.retry(exc=exc, countdown=job_countdown(retry_delay(attempt=self.request.retries + 1))) from exc
    if outcome.retry_in is not None:
        chain = str(outcome.dispatch) if outcome.dispatch else None
        kwargs = {"generation_id": generation_id, "user_id": user_id, "dispatch": chain}
        raise self.retry(countdown=job_countdown(outcome.retry_in), kwargs=kwargs, max_retries=_UNBOUNDED)
    return outcome.status
