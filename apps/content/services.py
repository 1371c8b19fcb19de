"""Writes of content. Every write runs through run_sharded_write, so it rides out live data moves.

The generation row is the outbox. Creating one commits the row with the token
of its first job (``dispatch_token``) and when that job is due; the message is
sent after the commit and may be lost (broker down, broker restarted, worker
killed). Nothing is lost with it: the sweeper (``sweeper.py``) re-sends the job
of any row whose job is overdue, so a request that committed its row has
succeeded whatever the broker was doing.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, router, transaction
from django.db.models import F, Q, UUIDField, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.observability import metrics
from shardrouter.writes import run_sharded_write

from .models import Generation, UsageEvent

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Created:
    """A generation from ``generation_create_once``: ``created`` is False when the key was seen before."""

    generation: Generation
    created: bool


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
    idempotency_key: str = "",
) -> Generation:
    """Store a new generation as queued, with its usage event, on the user's shard, and queue its job.

    The job (``apps.content.tasks.generation_run``) is sent once the shard's
    transaction commits, ``job_delay`` seconds later (the page leaves its live
    stream a head start); ``None`` queues no job. A broker that is down does
    not fail the call: the committed row is the outbox and the sweeper sends
    the job later.
    """

    def work() -> Generation:
        now = timezone.now()
        token = uuid.uuid4() if job_delay is not None else None
        generation = Generation.objects.for_user(user_id).create(
            user_id=user_id,
            prompt=prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=list(stop),
            idempotency_key=idempotency_key,
            dispatch_token=token,
            dispatch_due_at=now + timedelta(seconds=job_delay or 0.0) if token else None,
        )
        UsageEvent.objects.for_user(user_id).create(
            user_id=user_id, kind=UsageEvent.Kind.GENERATION_REQUESTED, generation_id=generation.id
        )
        if token is not None:
            generation_enqueue_on_commit(
                user_id=user_id, generation_id=generation.id, dispatch=token, countdown=job_delay or 0.0
            )
        return generation

    generation = run_sharded_write(user_id=user_id, work=work)
    metrics.generation_events.labels("queued").inc()
    return generation


def generation_create_once(*, user_id: int, idempotency_key: str, **fields: object) -> Created:
    """Create a generation unless this user already created one with ``idempotency_key``; then return that one.

    Two concurrent requests with the same key race on the unique constraint
    ``(user_id, idempotency_key)``: the loser's transaction rolls back (no row,
    no usage event, no job) and it returns the winner's generation.
    """

    def existing() -> Generation | None:
        return Generation.objects.for_user(user_id).filter(idempotency_key=idempotency_key).first()

    found = existing()
    if found is not None:
        return Created(found, created=False)
    try:
        return Created(
            generation_create(user_id=user_id, idempotency_key=idempotency_key, **fields),  # type: ignore[arg-type]
            created=True,
        )
    except IntegrityError:
        found = existing()
        if found is None:
            raise
        return Created(found, created=False)


def generation_enqueue_on_commit(
    *, user_id: int, generation_id: int, dispatch: uuid.UUID, countdown: float = 0.0
) -> None:
    """Queue the generation's job once the current transaction on the user's shard commits.

    Call it inside ``run_sharded_write``: the hook is registered on the shard
    alias that transaction runs on (a hook on ``default`` would fire before the
    row is visible to the worker, or for a rolled-back write). Only IDs travel,
    with the dispatch token the row was given in the same transaction. A broker
    failure is logged, never raised: the row keeps its overdue dispatch and the
    sweeper sends it again.
    """
    alias = router.db_for_write(Generation, shard_key=user_id)

    # A named function, not functools.partial: robust on_commit hooks are logged by __qualname__.
    def send_job_after_commit() -> None:
        generation_send_job(user_id=user_id, generation_id=generation_id, dispatch=dispatch, countdown=countdown)

    transaction.on_commit(send_job_after_commit, using=alias, robust=True)


def generation_send_job(*, user_id: int, generation_id: int, dispatch: uuid.UUID | None, countdown: float) -> bool:
    """Publish one job message now; False (logged) when the broker refused it. Never raises."""
    from .tasks import generation_run

    try:
        generation_run.apply_async(
            kwargs={
                "generation_id": generation_id,
                "user_id": user_id,
                "dispatch": str(dispatch) if dispatch else None,
            },
            countdown=job_countdown(countdown),
            retry=False,  # fail fast: the row is the outbox, the sweeper re-sends
        )
    except Exception as exc:
        logger.warning(
            "generation %s: job not sent (%s: %s); the sweeper will send it again",
            generation_id,
            type(exc).__name__,
            exc,
        )
        return False
    return True


def job_countdown(seconds: float) -> int | None:
    """A job's countdown in whole seconds (at least 1), or None to run now.

    RabbitMQ's native delayed delivery (quorum queues) routes by whole seconds and refuses 0.
    """
    return max(1, math.ceil(seconds)) if seconds > 0 else None


def generation_redispatch(
    *, user_id: int, generation_id: int, overdue_before: timedelta, claim_lease: timedelta
) -> bool:
    """Send the job again of a generation that nothing will run by itself; False if it no longer qualifies.

    Qualifies: ``queued`` with a job due more than ``overdue_before`` ago (or
    none at all), or ``running`` under a claim older than ``claim_lease`` (its
    holder died) and not re-sent within ``overdue_before``. The conditional
    update makes concurrent sweepers (one per worker) and operators harmless:
    one of them re-sends, the others match no row. The row keeps its dispatch
    token when it has one, so the original message, if it is only late, and
    the re-sent one are the same chain: whichever comes first runs it.
    """
    now = timezone.now()
    overdue = Q(dispatch_due_at__isnull=True, updated_at__lt=now - overdue_before) | Q(
        dispatch_due_at__lt=now - overdue_before
    )
    stalled = Q(status=Generation.Status.QUEUED) & overdue | Q(
        status=Generation.Status.RUNNING, claimed_at__lt=now - claim_lease
    ) & (Q(dispatch_due_at__isnull=True) | Q(dispatch_due_at__lt=now - overdue_before))

    def work() -> uuid.UUID | None:
        rows = Generation.objects.for_user(user_id).filter(id=generation_id)
        updated = rows.filter(stalled).update(
            dispatch_token=Coalesce(F("dispatch_token"), Value(uuid.uuid4(), output_field=UUIDField())),
            dispatch_due_at=now,
        )
        if updated != 1:
            return None
        token: uuid.UUID = rows.values_list("dispatch_token", flat=True).get()
        generation_enqueue_on_commit(user_id=user_id, generation_id=generation_id, dispatch=token)
        return token

    return run_sharded_write(user_id=user_id, work=work) is not None


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
