"""Running a generation in the background (the Celery job's logic; the task itself stays thin)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from contentgen_service.client import ContentGenError

from .claims import Claim, claim_lease, generation_claim, generation_complete, generation_fail, generation_release
from .generator import (
    Failure,
    call_metadata,
    call_timeout,
    contentgen_client,
    describe_failure,
    generation_params,
    retry_delay,
)
from .models import Generation

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """Where a generation stands after one run, and when to try again (``retry_in``)."""

    status: str
    message: str = ""
    retry_in: float | None = None


def generation_after_failure(*, claim: Claim, failure: Failure, enqueue: bool) -> Outcome:
    """Decide what a failed call leads to: back to the queue with a backoff, or failed for good.

    A retryable failure gives the generation back while its claims are not
    used up (``JOB_MAX_ATTEMPTS``); with ``enqueue`` a job is queued to run
    it after the backoff (a stream does that; a job retries itself).
    """
    max_attempts = settings.CONTENTGEN["JOB_MAX_ATTEMPTS"]
    if failure.retryable and claim.attempt < max_attempts:
        delay = retry_delay(attempt=claim.attempt, retry_after=failure.retry_after)
        note = f"{failure.reason} Retrying in {delay:.1f} s (attempt {claim.attempt} of {max_attempts})."
        generation_release(claim=claim, note=note, enqueue_after=delay if enqueue else None)
        logger.info("generation %s: %s", claim.generation_id, note)
        return Outcome(Generation.Status.QUEUED, note, retry_in=delay)
    if failure.retryable:
        message = f"{failure.gave_up} ({claim.attempt} attempts)"
    else:
        message = failure.reason
    generation_fail(claim=claim, message=message)
    logger.warning("generation %s failed: %s", claim.generation_id, message)
    return Outcome(Generation.Status.FAILED, message)


def _busy_outcome(*, user_id: int, generation_id: int) -> Outcome:
    generation = Generation.objects.for_user(user_id).filter(id=generation_id).first()
    if generation is None:
        return Outcome("gone")
    if generation.status == Generation.Status.RUNNING and generation.claimed_at is not None:
        # Someone holds it. If that holder dies, its claim expires: come back then to take over.
        expires = generation.claimed_at + claim_lease() - timezone.now()
        return Outcome("busy", retry_in=max(expires.total_seconds(), 0.0) + 1.0)
    if generation.status == Generation.Status.QUEUED:
        return Outcome("busy", retry_in=1.0)  # released between our read and our claim: try again soon
    return Outcome(generation.status)


def generation_run_job(*, user_id: int, generation_id: int) -> Outcome:
    """Claim the generation, call the service, store the result (or the failure).

    Safe to run any number of times for one generation: only a successful
    claim calls the service, and only the claim holder stores anything.
    """
    claimed = generation_claim(user_id=user_id, generation_id=generation_id)
    if claimed is None:
        return _busy_outcome(user_id=user_id, generation_id=generation_id)
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
        return generation_after_failure(claim=claim, failure=describe_failure(error), enqueue=False)
    except BaseException:
        # Time limit, shutdown, database trouble: give it back so the retry (or anyone) can claim it.
        _release_quietly(claim)
        raise
    stored = generation_complete(claim=claim, result=result)
    return Outcome(Generation.Status.SUCCEEDED if stored else "lost")


def _release_quietly(claim: Claim) -> None:
    try:
        generation_release(claim=claim, note="Interrupted; it will be retried.")
    except Exception:
        # The claim then simply expires after the lease and is taken over.
        logger.exception("generation %s: could not release claim %s", claim.generation_id, claim.token)
