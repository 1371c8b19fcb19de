"""The one place Django talks to the content-generation service.

``contentgen_client()`` returns the process-wide ``ContentGenClient`` built
from ``settings.CONTENTGEN``. The client keeps one gRPC channel per process
and re-creates it after ``fork()`` (Celery prefork children, gunicorn
workers), retries UNAVAILABLE within a call and trips a circuit breaker while
the service is down. ``describe_failure()`` turns its exceptions into what a
job or a stream does next: retry later (and when) or fail with a message a
person can act on.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.utils import timezone

from apps.platform.request_id import current_request_id
from contentgen_service.client import (
    ClientConfig,
    ContentGenCircuitOpen,
    ContentGenClient,
    ContentGenDeadlineExceeded,
    ContentGenError,
    ContentGenInvalidArgument,
    ContentGenOverloaded,
    ContentGenUnauthenticated,
    ContentGenUnavailable,
    GenerationParams,
)

from .models import Generation


class _ClientHolder:
    """Holds this process's client; rebuilt only when the CONTENTGEN setting changes (tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: ContentGenClient | None = None

    def get(self) -> ContentGenClient:
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = ContentGenClient(client_config())
            return self._client

    def reset(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


_holder = _ClientHolder()


def contentgen_settings() -> dict[str, Any]:
    return dict(settings.CONTENTGEN)


def client_config() -> ClientConfig:
    """The client configuration from ``settings.CONTENTGEN``."""
    conf = contentgen_settings()
    return ClientConfig(
        target=conf["TARGET"],
        token=conf["TOKEN"],
        timeout_seconds=conf["TIMEOUT_SECONDS"],
        tls=conf["TLS"] or bool(conf["TLS_CA_FILE"]),
        tls_ca_file=Path(conf["TLS_CA_FILE"]) if conf["TLS_CA_FILE"] else None,
        tls_server_name=conf["TLS_SERVER_NAME"],
        max_attempts=conf["MAX_ATTEMPTS"],
        breaker_failures=conf["BREAKER_FAILURES"],
        breaker_reset_seconds=conf["BREAKER_RESET_SECONDS"],
    )


def contentgen_client() -> ContentGenClient:
    """The process-wide client (thread-safe; its channel is rebuilt after a fork)."""
    return _holder.get()


def _reset_on_setting_change(*, setting: str, **_kwargs: object) -> None:
    if setting == "CONTENTGEN":
        _holder.reset()


setting_changed.connect(_reset_on_setting_change, dispatch_uid="content.generator.reset")


def call_metadata() -> tuple[tuple[str, str], ...]:
    """gRPC metadata of a generation call: the request ID being served, so the service logs it too."""
    request_id = current_request_id.get()
    return () if request_id == "-" else (("x-request-id", request_id),)


def call_timeout() -> float:
    """Deadline in seconds of one generation call (a job's or a live stream's)."""
    return float(settings.CONTENTGEN["TIMEOUT_SECONDS"])


def generation_params(generation: Generation) -> GenerationParams:
    """The service request for a generation. ``request_id`` is the idempotency key: with no
    explicit seed the service derives the seed from it, so every retry produces the same text."""
    return GenerationParams(
        request_id=str(generation.request_id),
        user_id=generation.user_id,
        prompt=generation.prompt,
        max_tokens=generation.max_tokens,
        temperature=generation.temperature,
        top_p=generation.top_p,
        seed=generation.seed,
        stop=tuple(generation.stop or ()),
    )


@dataclass(frozen=True)
class Failure:
    """What a failed call means for the generation."""

    retryable: bool
    reason: str
    """A sentence for the user, without the retry plan (e.g. "The generation service is at capacity.")."""
    gave_up: str
    """The final message once the retries are used up (retryable failures only)."""
    retry_after: float | None = None
    """The least wait the service asked for (circuit breaker cool-down), in seconds."""
    attempted: bool = True
    """False when the call never reached the service (circuit open): not counted as an attempt."""


def _detail(error: ContentGenError) -> str:
    """The service's own message without the status-code prefix the client adds."""
    text = str(error)
    code = getattr(error.code, "name", None)
    return text[len(code) + 2 :] if code and text.startswith(f"{code}: ") else text


def describe_failure(error: ContentGenError) -> Failure:
    """Classify a client exception: retry later (with which messages) or fail for good."""
    if isinstance(error, ContentGenCircuitOpen):
        return Failure(
            True,
            "The generation service is unreachable (recent calls failed, so calls pause briefly).",
            "The generation service could not be reached; please try again later.",
            retry_after=error.retry_after,
            attempted=False,
        )
    if isinstance(error, ContentGenUnavailable):
        return Failure(
            True,
            "The generation service is unreachable right now.",
            "The generation service could not be reached; please try again later.",
        )
    if isinstance(error, ContentGenDeadlineExceeded):
        seconds = f"{call_timeout():g}"
        return Failure(
            True,
            f"The generation service did not finish within {seconds} s.",
            f"The generation service did not finish within {seconds} s; try fewer max tokens or try again later.",
        )
    if isinstance(error, ContentGenOverloaded):
        return Failure(
            True,
            "The generation service is at capacity (too many generations at once).",
            "The generation service stayed at capacity; please try again later.",
        )
    if isinstance(error, ContentGenInvalidArgument):
        return Failure(False, f"The generation service refused the request: {_detail(error)}", "")
    if isinstance(error, ContentGenUnauthenticated):
        return Failure(
            False,
            "Authentication with the generation service failed: it refused this platform's token. "
            "An operator must give the web servers, the workers and the service the same CONTENTGEN_TOKEN.",
            "",
        )
    return Failure(False, f"The generation service failed: {error}", "")


def drained_failure() -> Failure:
    """A result the service cut short on its own (drained, restarted): retried, never stored as a success."""
    return Failure(
        True,
        "The generation service stopped before the text was complete (it was restarting).",
        "The generation service kept stopping before the text was complete; please try again later.",
    )


def is_cut_short(finish_reason: object) -> bool:
    """A result whose text the server ended without the user asking (an older service's drain)."""
    return str(finish_reason) == "cancelled"


def retry_budget_left(*, created_at: datetime, delay: float, now: datetime | None = None) -> bool:
    """Whether a retry ``delay`` seconds from now still starts within the generation's time budget."""
    budget = float(contentgen_settings()["RETRY_BUDGET_SECONDS"])
    elapsed = ((now or timezone.now()) - created_at).total_seconds()
    return elapsed + delay <= budget


def retry_delay(*, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
    """Seconds to wait before claim number ``attempt + 1``: exponential backoff with jitter.

    The n-th wait is drawn from [d/2, d] with d = base * 2**(n-1) capped at the
    maximum, so retries of many generations spread out instead of arriving
    together; never shorter than the service's own ``retry_after``.
    """
    conf = contentgen_settings()
    ceiling = min(conf["RETRY_BACKOFF_MAX_SECONDS"], conf["RETRY_BACKOFF_SECONDS"] * 2 ** max(attempt - 1, 0))
    delay = ceiling / 2 + (rng or random).uniform(0, ceiling / 2)
    return round(max(delay, retry_after or 0.0), 3)
