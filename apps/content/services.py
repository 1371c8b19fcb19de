"""Writes of content. Every write runs through run_sharded_write, so it rides out live data moves."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

from django.db import router, transaction

from quantumquill.observability import metrics
from shardrouter.writes import run_sharded_write

from .models import Generation, UsageEvent

logger = logging.getLogger(__name__)


def generation_create(
    *,
    user_id: int,
    prompt: str,
    max_tokens: int = 200,
    temperature: float = 0.8,
    top_p: float = 0.95,
    seed: int | None = None,
    stop: Sequence[str] = (),
    job_delay: float | None = 0.0,
) -> Generation:
    """Store a new generation as queued, with its usage event, on the user's shard, and queue its job.

    The job (``apps.content.tasks.generation_run``) is sent once the shard's
    transaction commits, ``job_delay`` seconds later (the page leaves its live
    stream a head start); ``None`` queues no job.
    """

    def work() -> Generation:
        generation = Generation.objects.for_user(user_id).create(
            user_id=user_id,
            prompt=prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=list(stop),
        )
        UsageEvent.objects.for_user(user_id).create(
            user_id=user_id, kind=UsageEvent.Kind.GENERATION_REQUESTED, generation_id=generation.id
        )
        if job_delay is not None:
            generation_enqueue_on_commit(user_id=user_id, generation_id=generation.id, countdown=job_delay)
        return generation

    return run_sharded_write(user_id=user_id, work=work)


def generation_enqueue_on_commit(*, user_id: int, generation_id: int, countdown: float = 0.0) -> None:
    """Queue the generation's job once the current transaction on the user's shard commits.

    Call it inside ``run_sharded_write``: the hook is registered on the shard
    alias that transaction runs on (a hook on ``default`` would fire before the
    row is visible to the worker, or for a rolled-back write). Only IDs travel.
    A broker failure is logged, not raised: the row stays queued and a live
    stream or ``manage.py generations_requeue`` picks it up.
    """
    alias = router.db_for_write(Generation, shard_key=user_id)
    transaction.on_commit(
        partial(_send_job, user_id=user_id, generation_id=generation_id, countdown=countdown),
        using=alias,
        robust=True,
    )


def generation_requeue(*, user_id: int, generation_id: int) -> None:
    """Send the generation's job now (outside any transaction). Always safe: a job claims before it works."""
    _send_job(user_id=user_id, generation_id=generation_id, countdown=0.0)


def _send_job(*, user_id: int, generation_id: int, countdown: float) -> None:
    from .tasks import generation_run

    generation_run.apply_async(
        kwargs={"generation_id": generation_id, "user_id": user_id}, countdown=countdown if countdown > 0 else None
    )
    metrics.generation_events.labels("queued").inc()


def generation_delete(*, user_id: int, generation_id: int) -> None:
    """Delete one of the user's generations and its exports; raises Generation.DoesNotExist for anyone else's.

    The export rows go in the same transaction as the generation; their files
    are removed from storage once it commits, so every signed link to them stops working.
    """
    from apps.exports.services import export_files_delete, exports_delete_rows

    def work() -> list[str]:
        deleted, _ = Generation.objects.for_user(user_id).filter(id=generation_id).delete()
        if not deleted:
            raise Generation.DoesNotExist(f"Generation {generation_id} does not exist for user {user_id}.")
        return exports_delete_rows(user_id=user_id, generation_id=generation_id)

    keys = run_sharded_write(user_id=user_id, work=work)
    export_files_delete(user_id=user_id, generation_id=generation_id, keys=keys)
