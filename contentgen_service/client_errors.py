"""Exceptions raised by the content-generation client.

Each says whether retrying later may help (``retryable``), so a Celery task can
choose between ``self.retry()`` and failing the job.
"""

from __future__ import annotations

import grpc


class ContentGenError(Exception):
    """Base class: the call failed. ``code`` is the gRPC status, when there was one."""

    retryable = False

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class ContentGenUnavailable(ContentGenError):
    """The service could not be reached, or every replica refused (shutting down)."""

    retryable = True


class ContentGenCircuitOpen(ContentGenUnavailable):
    """Failing fast: recent calls could not reach the service.

    Retry after ``retry_after`` seconds.
    """

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, code=grpc.StatusCode.UNAVAILABLE)
        self.retry_after = retry_after


class ContentGenDeadlineExceeded(ContentGenError):
    """The call's deadline passed before the generation finished."""

    retryable = True


class ContentGenOverloaded(ContentGenError):
    """The service is at its concurrency limit; retry with backoff."""

    retryable = True


class ContentGenInvalidArgument(ContentGenError):
    """The request is invalid; the message says which field and the allowed range."""


class ContentGenUnauthenticated(ContentGenError):
    """The service refused the token: check CONTENTGEN_TOKEN on both sides."""


class ContentGenCancelled(ContentGenError):
    """The call was cancelled."""


_BY_CODE: dict[grpc.StatusCode, type[ContentGenError]] = {
    grpc.StatusCode.UNAVAILABLE: ContentGenUnavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: ContentGenDeadlineExceeded,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ContentGenOverloaded,
    grpc.StatusCode.INVALID_ARGUMENT: ContentGenInvalidArgument,
    grpc.StatusCode.UNAUTHENTICATED: ContentGenUnauthenticated,
    grpc.StatusCode.CANCELLED: ContentGenCancelled,
}


def error_from_rpc(error: grpc.RpcError) -> ContentGenError:
    """Return the client exception for a failed gRPC call."""
    code: grpc.StatusCode = error.code()
    details = error.details() or code.name
    return _BY_CODE.get(code, ContentGenError)(f"{code.name}: {details}", code=code)
