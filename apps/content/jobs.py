"""Running a generation in the background (the Celery job's logic; the task itself stays thin).

Retries are budgeted by time: a retryable failure gives the generation back
with a capped exponential backoff (with jitter) while the next try still
starts within ``RETRY_BUDGET_SECONDS`` of its creation (10 minutes by
default) and under the ``JOB_MAX_ATTEMPTS`` safety cap. A call the client's
circuit breaker refused without reaching the service is not an attempt. Each
retry takes a new dispatch token, so exactly one job chain owns a generation.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from contentgen_service.client import ContentGenError

from .claims import (
    Claim,
    claim_lease,
    generation_claim,
    generation_complete,
    generation_drop_dispatch,
    generation_fail,
    generation_release,
)
from .generator import (
    Failure,
    call_metadata,
    call_timeout,
    contentgen_client,
    describe_failure,
    drained_failure,
    generation_params,
    is_cut_short,
    retry_budget_left,
    retry_delay,
)
from .models import Generation

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """Where a generation stands after one run, and when to try again (``retry_in``, with ``dispatch``)."""

    status: str
    message: str = ""
    retry_in: float | None = None
    dispatch: uuid.UUID | None = None


def generation_after_failure(*, claim: Claim, failure: Failure, chain: bool) -> Outcome:
    """Decide what a failed call leads to: back to the queue with a backoff, or failed for good.

    ``chain=True``: a job, which retries itself with the returned dispatch.
    ``chain=False``: a live stream; a job is queued unless one already awaits
    the generation.
    """
    max_attempts = settings.CONTENTGEN["JOB_MAX_ATTEMPTS"]
    delay = retry_delay(attempt=claim.attempt, retry_after=failure.retry_after)
    attempts_left = claim.attempt < max_attempts or not failure.attempted
    if failure.retryable and attempts_left and retry_budget_left(created_at=claim.created_at, delay=delay):
        note = f"{failure.reason} Retrying in {delay:.1f} s (attempt {claim.attempt})."
        dispatch = generation_release(
            claim=claim, note=note, retry_after=delay, chain=chain, count_attempt=failure.attempted
        )
        logger.info("generation %s: %s", claim.generation_id, note)
        return Outcome(Generation.Status.QUEUED, note, retry_in=delay, dispatch=dispatch)
    if failure.retryable:
        message = f"{failure.gave_up} ({claim.attempt} attempts)"
    else:
        message = failure.reason
    generation_fail(claim=claim, message=message)
    logger.warning("generation %s failed: %s", claim.generation_id, message)
    return Outcome(Generation.Status.FAILED, message)


def _unclaimed_outcome(*, user_id: int, generation_id: int, dispatch: uuid.UUID | None) -> Outcome:
    generation = Generation.objects.for_user(user_id).filter(id=generation_id).first()
    if generation is None:
        return Outcome("gone")
    if generation.is_finished:
        return Outcome(generation.status)
    if dispatch is not None and generation.dispatch_token != dispatch:
        return Outcome("superseded")  # a newer dispatch owns the generation
    if generation.status == Generation.Status.RUNNING and generation.claimed_by == "job":
        # Another delivery of this chain holds it (a redelivered message: its worker may have died).
        # Come back when that claim would expire, to take over if the holder is gone.
        expires = generation.claimed_at + claim_lease() - timezone.now() if generation.claimed_at else None
        retry_in = max(expires.total_seconds(), 0.0) + 1.0 if expires is not None else 1.0
        return Outcome("busy", retry_in=retry_in, dispatch=dispatch)
    if generation.status == Generation.Status.RUNNING:
        # A live stream holds it. This chain ends here: if the stream gives the row back it dispatches a
        # job of its own (no job awaits any more), and if it dies the sweeper re-dispatches the row.
        if dispatch is not None:
            generation_drop_dispatch(user_id=user_id, generation_id=generation_id, dispatch=dispatch)
        return Outcome("busy")
    return Outcome("busy", retry_in=1.0, dispatch=dispatch)  # released between our read and our claim


def generation_run_job(*, user_id: int, generation_id: int, dispatch: uuid.UUID | None = None) -> Outcome:
    """Claim the generation, call the service, store the result (or the failure).

    Safe to run any number of times for one generation: only a successful
    claim calls the service, and only the claim holder stores anything.
    """
    claimed = generation_claim(user_id=user_id, generation_id=generation_id, dispatch=dispatch, by="job")
    if claimed is None:
        return _unclaimed_outcome(user_id=user_id, generation_id=generation_id, dispatch=dispatch)
    claim, generation = claimed
    max_attempts = settings.CONTENTGEN["JOB_MAX_ATTEMPTS"]
    if claim.attempt > max_attempts:
        # Only a take-over of expired claims gets here: its runs keep dying (killed worker, time limit).
        message = f"The generation was interrupted {claim.attempt - 1} times and was abandoned."
        generation_fail(claim=claim, message=message)
        return Outcome(Generation.Status.FAILED, message)
    try:
        result = contentgen_client().generate(
            generation_params(generation), timeout=call_timeout(), metadata=call_metadata()
        )
    except ContentGenError as error:
        return generation_after_failure(claim=claim, failure=describe_failure(error), chain=True)
    except BaseException:
        # Time limit, shutdown, database trouble: give it back so the retry (or anyone) can claim it.
        _release_quietly(claim)
        raise
    if is_cut_short(result.finish_reason):
        return generation_after_failure(claim=claim, failure=drained_failure(), chain=True)
    stored = generation_complete(claim=claim, result=result)
    return Outcome(Generation.Status.SUCCEEDED if stored else "lost")


def _release_quietly(claim: Claim) -> None:
    try:
        generation_release(claim=claim, note="Interrupted; it will be retried.")
    except Exception:
        # The claim then simply expires after the lease and is taken over.
        logger.exception("generation %s: could not release claim %s", claim.generation_id, claim.token)
