"""Claims: who may run a generation and store its result.

A Celery job and a live stream run a generation the same way: they *claim*
it with one conditional update (``queued`` -> ``running`` with a fresh claim
token), call the service, and store the result with another conditional update
that only succeeds while the row still carries their token. Two workers that
receive the same job, or a job and a stream racing, therefore never store two
results: at most one claim succeeds, and a holder that lost its claim stores
nothing. A claim older than the lease (``CLAIM_LEASE_SECONDS``, the Celery hard
time limit, longer than any call's deadline) belongs to a holder that died and
may be taken over.

Every write runs through ``run_sharded_write`` on the owner's shard.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from apps.observability import metrics
from contentgen_service.client import GenerateResult
from shardrouter.writes import run_sharded_write

from .models import Generation, UsageEvent
from .services import generation_enqueue_on_commit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    """The right to run one generation, held by one job or stream."""

    user_id: int
    generation_id: int
    token: uuid.UUID
    attempt: int
    """How many claims the generation has had, this one included."""
    created_at: datetime
    """When the generation was created: retries are budgeted by time from there, and latency metrics start there."""
    claimed_at: datetime | None = None
    """When this claim was taken (time to first token as the user saw it)."""


def claim_lease() -> timedelta:
    return timedelta(seconds=settings.CONTENTGEN["CLAIM_LEASE_SECONDS"])


def generation_claim(
    *, user_id: int, generation_id: int, dispatch: uuid.UUID | None = None, by: str = "stream"
) -> tuple[Claim, Generation] | None:
    """Claim a queued generation (or one whose claim expired); None if someone else has it or it is done.

    A job (``by="job"``) passes its ``dispatch`` token: it may claim only while
    the row still names its chain (a newer dispatch supersedes it). A live
    stream passes none.
    """
    token = uuid.uuid4()
    now = timezone.now()
    claimable = Q(status=Generation.Status.QUEUED) | Q(
        status=Generation.Status.RUNNING, claimed_at__lt=now - claim_lease()
    )
    if dispatch is not None:
        claimable &= Q(dispatch_token=dispatch)

    def work() -> tuple[Claim, Generation] | None:
        rows = Generation.objects.for_user(user_id).filter(id=generation_id)
        updated = rows.filter(claimable).update(
            status=Generation.Status.RUNNING,
            claim_token=token,
            claimed_by=by,
            claimed_at=now,
            started_at=now,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
        if updated != 1:
            return None
        generation = rows.get()
        return Claim(user_id, generation_id, token, generation.attempts, generation.created_at, now), generation

    claimed = run_sharded_write(user_id=user_id, work=work)
    if claimed is not None:
        metrics.generation_events.labels("started").inc()
    return claimed


def _held(claim: Claim) -> QuerySet[Generation]:
    return Generation.objects.for_user(claim.user_id).filter(
        id=claim.generation_id, status=Generation.Status.RUNNING, claim_token=claim.token
    )


def generation_complete(*, claim: Claim, result: GenerateResult) -> bool:
    """Store the result and its usage event, if the claim still holds; False (nothing stored) otherwise."""
    now = timezone.now()
    usage = result.usage

    def work() -> bool:
        updated = _held(claim).update(
            status=Generation.Status.SUCCEEDED,
            output=result.text,
            error="",
            finish_reason=str(result.finish_reason),
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            time_to_first_token_ms=usage.time_to_first_token_ms,
            total_ms=usage.total_ms,
            model_name=result.model[:200],
            claim_token=None,
            dispatch_token=None,
            dispatch_due_at=None,
            completed_at=now,
            updated_at=now,
        )
        if updated != 1:
            return False
        UsageEvent.objects.for_user(claim.user_id).create(
            user_id=claim.user_id,
            kind=UsageEvent.Kind.GENERATION_COMPLETED,
            generation_id=claim.generation_id,
            tokens=usage.prompt_tokens + usage.completion_tokens,
        )
        return True

    stored = run_sharded_write(user_id=claim.user_id, work=work)
    if stored:
        _observe_success(claim, now, usage.time_to_first_token_ms)
    else:
        logger.warning("generation %s: claim %s was lost; result not stored", claim.generation_id, claim.token)
    return stored


def generation_fail(*, claim: Claim, message: str) -> bool:
    """Mark the generation failed with ``message``, if the claim still holds."""
    now = timezone.now()

    def work() -> bool:
        return (
            _held(claim).update(
                status=Generation.Status.FAILED,
                error=message,
                claim_token=None,
                dispatch_token=None,
                dispatch_due_at=None,
                completed_at=now,
                updated_at=now,
            )
            == 1
        )

    failed = run_sharded_write(user_id=claim.user_id, work=work)
    if failed:
        metrics.generation_events.labels("failed").inc()
    return failed


def _observe_success(claim: Claim, now: datetime, time_to_first_token_ms: float | None) -> None:
    metrics.generation_events.labels("succeeded").inc()
    metrics.generation_latency.observe(max((now - claim.created_at).total_seconds(), 0.0))
    if claim.claimed_at is not None and time_to_first_token_ms is not None:
        waited = (claim.claimed_at - claim.created_at).total_seconds()
        metrics.generation_time_to_first_token.observe(max(waited + time_to_first_token_ms / 1000, 0.0))


def generation_release(
    *,
    claim: Claim,
    note: str = "",
    retry_after: float | None = None,
    chain: bool = False,
    count_attempt: bool = True,
) -> uuid.UUID | None:
    """Give the generation back (``running`` -> ``queued``), if the claim still holds.

    ``note`` is kept in ``error`` so that readers see why it is waiting.
    ``count_attempt=False`` (a viewer closed the live stream, or the client's
    circuit breaker refused the call without reaching the service) does not
    count this claim as an attempt.

    With ``retry_after`` the row gets a job due that many seconds later, in the
    same transaction: ``chain=True`` (a job retrying itself) always takes a new
    dispatch token, which supersedes any other message; ``chain=False`` (a live
    stream) dispatches only when no job awaits the row already, so a stream
    that fails never starts a second chain. Returns the token of the job to
    run: a job retries itself with it; for a stream the job was already queued
    after the commit. None: released with no new job (or not released).
    """
    now = timezone.now()
    attempts = F("attempts") if count_attempt else F("attempts") - 1

    def work() -> uuid.UUID | None:
        released = (
            _held(claim).update(
                status=Generation.Status.QUEUED,
                error=note,
                claim_token=None,
                claimed_at=None,
                attempts=attempts,
                updated_at=now,
            )
            == 1
        )
        if not released or retry_after is None:
            return None
        dispatch = uuid.uuid4()
        rows = Generation.objects.for_user(claim.user_id).filter(id=claim.generation_id)
        if not chain:
            rows = rows.filter(dispatch_token__isnull=True)
        due = now + timedelta(seconds=retry_after)
        if rows.update(dispatch_token=dispatch, dispatch_due_at=due) != 1:
            return None  # a job awaits the row: it runs it
        if not chain:
            generation_enqueue_on_commit(
                user_id=claim.user_id, generation_id=claim.generation_id, dispatch=dispatch, countdown=retry_after
            )
        return dispatch

    released = run_sharded_write(user_id=claim.user_id, work=work)
    if released and count_attempt:
        metrics.generation_events.labels("retried").inc()
    return released


def generation_drop_dispatch(*, user_id: int, generation_id: int, dispatch: uuid.UUID) -> bool:
    """A job found the row held by someone else: it ends its chain, and the row no longer awaits a job.

    Only while the row is still ``running`` and still names this job's chain:
    if the holder gives it back (a failed stream), it then dispatches a job of
    its own; a dead holder's expired claim is the sweeper's to re-dispatch.
    """
    now = timezone.now()

    def work() -> bool:
        return (
            Generation.objects.for_user(user_id)
            .filter(id=generation_id, status=Generation.Status.RUNNING, dispatch_token=dispatch)
            .update(dispatch_token=None, dispatch_due_at=None, updated_at=now)
            == 1
        )

    return run_sharded_write(user_id=user_id, work=work)
