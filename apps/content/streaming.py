"""Live output: a generation as server-sent events, for the page and the API alike.

The stream runs the generation itself when it can: it claims a *queued*
generation exactly as a Celery job does, relays ``GenerateStream`` chunk by
chunk while keeping the text, and stores the result under its claim. If the
reader goes away (the WSGI server closes the response iterator), the gRPC call
is cancelled, which stops the service's work, and the generation goes back to
the queue with a job sent to finish it in the background. A generation
running elsewhere (a job, another tab) is waited for, and a finished one is
sent whole. Events (docs/generation.md):

    event: chunk   data: {"text", "completion_tokens"}
    event: done    data: {"status", "finish_reason", "output", "usage"}
    event: error   data: {"status": "failed"|"queued", "message", "retry_after"}
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils import timezone

from contentgen_service.client import ContentGenError

from .claims import Claim, claim_lease, generation_claim, generation_complete, generation_release
from .generator import (
    call_metadata,
    call_timeout,
    contentgen_client,
    describe_failure,
    drained_failure,
    generation_params,
    is_cut_short,
)
from .jobs import generation_after_failure
from .models import Generation

logger = logging.getLogger(__name__)

# A comment line at least this often while waiting, so a closed connection is noticed and proxies
# keep the response open.
KEEPALIVE_SECONDS = 5.0


def sse_event(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event; the JSON is on one line (newlines in the text are escaped)."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


def sse_response(events: Iterator[bytes]) -> StreamingHttpResponse:
    """A ``text/event-stream`` response that no cache or proxy holds back."""
    response = StreamingHttpResponse(events, content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def _usage(generation: Generation) -> dict[str, Any]:
    return {
        "prompt_tokens": generation.prompt_tokens,
        "completion_tokens": generation.completion_tokens,
        "time_to_first_token_ms": generation.time_to_first_token_ms,
        "total_ms": generation.total_ms,
    }


def _done(generation: Generation) -> bytes:
    return sse_event(
        "done",
        {
            "status": generation.status,
            "finish_reason": generation.finish_reason,
            "output": generation.output,
            "usage": _usage(generation),
        },
    )


def _error(status: str, message: str, retry_after: float | None = None) -> bytes:
    return sse_event("error", {"status": status, "message": message, "retry_after": retry_after})


def _finished(generation: Generation) -> Iterator[bytes]:
    if generation.status == Generation.Status.SUCCEEDED:
        yield sse_event("chunk", {"text": generation.output, "completion_tokens": generation.completion_tokens})
        yield _done(generation)
    elif generation.status == Generation.Status.CANCELLED:
        yield _error("failed", generation.error or "This generation was cancelled.")
    else:
        yield _error("failed", generation.error or "The generation failed.")


def _reload(claim: Claim) -> Generation | None:
    return Generation.objects.for_user(claim.user_id).filter(id=claim.generation_id).first()


def _relay(claim: Claim, generation: Generation) -> Iterator[bytes]:
    """Run the claimed generation over GenerateStream, relaying each chunk, then store the result."""
    settled = False  # the claim's fate is decided (stored, failed or given back)
    try:
        stream = contentgen_client().generate_stream(
            generation_params(generation), timeout=call_timeout(), metadata=call_metadata()
        )
        with stream:  # leaving it early (reader gone) cancels the call: the service stops generating
            for chunk in stream:
                yield sse_event("chunk", {"text": chunk.text, "completion_tokens": chunk.completion_tokens})
        result = stream.result()  # raises ContentGenError rather than hand over a partial text
        if is_cut_short(result.finish_reason):
            outcome = generation_after_failure(claim=claim, failure=drained_failure(), chain=False)
            settled = True
            yield _error(outcome.status, outcome.message, outcome.retry_in)
            return
        generation_complete(claim=claim, result=result)
        settled = True
        stored = _reload(claim)
        if stored is None:
            yield _error("failed", "This generation was deleted.")
        elif stored.status == Generation.Status.SUCCEEDED:
            yield _done(stored)
        else:
            yield from _finished(stored)
    except ContentGenError as error:
        outcome = generation_after_failure(claim=claim, failure=describe_failure(error), chain=False)
        settled = True
        yield _error(outcome.status, outcome.message, outcome.retry_in)
    finally:
        if not settled:
            # The reader left (GeneratorExit) or something broke: let a job finish it in the background.
            _hand_back(claim)


def _hand_back(claim: Claim) -> None:
    try:
        generation_release(claim=claim, note="", retry_after=0.0, count_attempt=False)
        logger.info("generation %s: stream closed early; handed to a background job", claim.generation_id)
    except Exception:
        # The claim then expires after the lease and a job's retry takes it over.
        logger.exception("generation %s: could not hand back claim %s", claim.generation_id, claim.token)


def generation_events(*, user_id: int, generation_id: int) -> Iterator[bytes]:
    """The events of one of the user's generations (the caller checked it exists and is theirs)."""
    try:
        yield from _events(user_id=user_id, generation_id=generation_id)
    except Exception:
        # Headers are long gone: say so in the stream rather than cutting it off.
        logger.exception("generation %s: stream failed", generation_id)
        yield _error("queued", "Live output was interrupted; the generation continues in the background.", None)


def _events(*, user_id: int, generation_id: int) -> Iterator[bytes]:
    poll = float(settings.CONTENTGEN["STREAM_POLL_SECONDS"])
    last_write = time.monotonic()
    while True:
        generation = Generation.objects.for_user(user_id).filter(id=generation_id).first()
        if generation is None:
            yield _error("failed", "This generation was deleted.")
            return
        if generation.is_finished:
            yield from _finished(generation)
            return
        if generation.status == Generation.Status.QUEUED or _expired(generation):
            claimed = generation_claim(user_id=user_id, generation_id=generation_id)
            if claimed is not None:
                yield from _relay(*claimed)
                return
            # Someone else claimed it first (or a lagging read replica showed it queued): look again shortly.
        if time.monotonic() - last_write >= KEEPALIVE_SECONDS:
            yield b": waiting for the generation running elsewhere\n\n"
            last_write = time.monotonic()
        time.sleep(poll)


def _expired(generation: Generation) -> bool:
    return (
        generation.status == Generation.Status.RUNNING
        and generation.claimed_at is not None
        and generation.claimed_at < timezone.now() - claim_lease()
    )
