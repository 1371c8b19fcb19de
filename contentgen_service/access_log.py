"""One structured log line and one set of metrics per call."""

from __future__ import annotations

import logging
import time
from types import TracebackType
from typing import Self

import grpc

from contentgen_service.errors import RpcFailure
from contentgen_service.gen.contentgen.v1 import contentgen_pb2 as pb
from contentgen_service.metrics import ServiceMetrics

logger = logging.getLogger("contentgen.access")
ORIGIN_REQUEST_ID_KEY = "x-request-id"


class CallRecord:
    """Measures one call; use as a context manager around the handler's work.

    On exit it logs a JSON line (method, request_id, user_id, status,
    duration_ms, tokens, peer) and updates the call metrics. An RpcFailure
    leaving the block sets the status; a GeneratorExit means gRPC dropped a
    stream whose client went away (CANCELLED); anything else is INTERNAL.
    """

    def __init__(
        self,
        metrics: ServiceMetrics,
        method: str,
        request: object,
        context: grpc.ServicerContext,
    ) -> None:
        self._metrics = metrics
        self.method = method
        self.request_id = request.request_id if isinstance(request, pb.GenerateRequest) else ""
        self.user_id = request.user_id if isinstance(request, pb.GenerateRequest) else 0
        self.peer = context.peer()
        # The caller's request ID (a web request, or the job it queued), to follow one request across logs.
        self.origin_request_id = next(
            (str(value) for key, value in context.invocation_metadata() or () if key == ORIGIN_REQUEST_ID_KEY), ""
        )
        self.status = grpc.StatusCode.OK
        self.detail = ""
        self.completion_tokens = 0
        self.finish_reason = ""
        self._started = time.monotonic()

    @property
    def started(self) -> float:
        """``time.monotonic()`` when the call began."""
        return self._started

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(exc, RpcFailure):
            self.status, self.detail = exc.code, exc.message
        elif isinstance(exc, GeneratorExit):
            if self.status is grpc.StatusCode.OK:
                self.status, self.detail = grpc.StatusCode.CANCELLED, "client went away"
        elif exc is not None:
            self.status, self.detail = (
                grpc.StatusCode.INTERNAL,
                f"{type(exc).__name__}: {exc}",
            )
            logger.error("unexpected error in %s", self.method, exc_info=exc)
        seconds = time.monotonic() - self._started
        self._metrics.record_call(self.method, self.status, seconds)
        fields: dict[str, object] = {
            "method": self.method,
            "request_id": self.request_id,
            "user_id": self.user_id,
            "status": self.status.name,
            "duration_ms": round(seconds * 1000.0, 2),
            "tokens": self.completion_tokens,
            "peer": self.peer,
        }
        if self.origin_request_id:
            fields["origin_request_id"] = self.origin_request_id
        if self.finish_reason:
            fields["finish_reason"] = self.finish_reason
        if self.detail:
            fields["detail"] = self.detail
        logger.info("rpc", extra={"fields": fields})
