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
from datetime import timedelta

from django.conf import settings
from django.db.models import F, Q, QuerySet
from django.utils import timezone

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


def claim_lease() -> timedelta:
    return timedelta(seconds=settings.CONTENTGEN["CLAIM_LEASE_SECONDS"])


def generation_claim(*, user_id: int, generation_id: int) -> tuple[Claim, Generation] | None:
    """Claim a queued generation (or one whose claim expired); None if someone else has it or it is done."""
    token = uuid.uuid4()
    now = timezone.now()
    claimable = Q(status=Generation.Status.QUEUED) | Q(
        status=Generation.Status.RUNNING, claimed_at__lt=now - claim_lease()
    )

    def work() -> tuple[Claim, Generation] | None:
        rows = Generation.objects.for_user(user_id).filter(id=generation_id)
        updated = rows.filter(claimable).update(
            status=Generation.Status.RUNNING,
            claim_token=token,
            claimed_at=now,
            started_at=now,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
        if updated != 1:
            return None
        generation = rows.get()
        return Claim(user_id, generation_id, token, generation.attempts), generation

    return run_sharded_write(user_id=user_id, work=work)


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
    if not stored:
        logger.warning("generation %s: claim %s was lost; result not stored", claim.generation_id, claim.token)
    return stored


def generation_fail(*, claim: Claim, message: str) -> bool:
    """Mark the generation failed with ``message``, if the claim still holds."""
    now = timezone.now()

    def work() -> bool:
        return (
            _held(claim).update(
                status=Generation.Status.FAILED, error=message, claim_token=None, completed_at=now, updated_at=now
            )
            == 1
        )

    return run_sharded_write(user_id=claim.user_id, work=work)


def generation_release(
    *, claim: Claim, note: str = "", enqueue_after: float | None = None, count_attempt: bool = True
) -> bool:
    """Give the generation back (``running`` -> ``queued``), if the claim still holds.

    ``note`` is kept in ``error`` so that readers see why it is waiting. With
    ``enqueue_after`` a job is queued, after the commit, to run it that many
    seconds later. ``count_attempt=False`` (a viewer closed the live stream:
    nothing failed) does not count this claim towards ``JOB_MAX_ATTEMPTS``.
    """
    now = timezone.now()
    attempts = F("attempts") if count_attempt else F("attempts") - 1

    def work() -> bool:
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
        if released and enqueue_after is not None:
            generation_enqueue_on_commit(
                user_id=claim.user_id, generation_id=claim.generation_id, countdown=enqueue_after
            )
        return released

    return run_sharded_write(user_id=claim.user_id, work=work)
