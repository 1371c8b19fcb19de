"""The generation use case behind the gRPC servicer."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import grpc

from contentgen_service.access_log import CallRecord
from contentgen_service.admission import Admission
from contentgen_service.backends.base import BackendError, TextGenerator
from contentgen_service.call_signal import GrpcCallSignal
from contentgen_service.errors import RpcFailure
from contentgen_service.gen.contentgen.v1 import contentgen_pb2 as pb
from contentgen_service.generation import GenerationInterrupted, generate_text
from contentgen_service.metrics import ServiceMetrics
from contentgen_service.results import GenerationSummary, TextChunk
from contentgen_service.validation import RequestLimits, validated_request

_INTERRUPTED_STATUS = {
    "deadline": (grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed"),
    "cancelled": (grpc.StatusCode.CANCELLED, "the client cancelled the call"),
    # Drained: the server stopped before the text was complete. UNAVAILABLE is what clients retry (on
    # another replica, or on this one once it is back); a partial text is never reported as a result.
    "shutdown": (grpc.StatusCode.UNAVAILABLE, "the server is shutting down (drained); retry the call"),
}


class GenerationService:
    """Validates, admits and runs generations, keeping the metrics up to date."""

    def __init__(
        self,
        *,
        generator: TextGenerator,
        admission: Admission,
        metrics: ServiceMetrics,
        limits: RequestLimits,
        shutdown: threading.Event,
        token_interval: float = 0.0,
    ) -> None:
        self._generator = generator
        self._admission = admission
        self._metrics = metrics
        self._limits = limits
        self._shutdown = shutdown
        self._token_interval = token_interval

    def events(
        self,
        request: pb.GenerateRequest,
        context: grpc.ServicerContext,
        record: CallRecord,
    ) -> Iterator[TextChunk | GenerationSummary]:
        """Yield the chunks of one generation, then its summary.

        Raises RpcFailure with the status the client should get: bad input,
        overload, shutdown, a backend failure, or the call ending early.
        """
        settings = validated_request(request, self._limits)
        signal = GrpcCallSignal(context, self._shutdown)

        def count_token() -> None:
            record.completion_tokens += 1
            self._metrics.tokens.inc()

        with self._admission.admit():
            run = generate_text(
                self._generator,
                settings,
                signal,
                started=record.started,
                token_interval=self._token_interval,
                on_token=count_token,
            )
            try:
                with contextlib.closing(run):
                    for event in run:
                        if isinstance(event, GenerationSummary):
                            self._record_summary(event, record)
                        yield event
            except GenerationInterrupted as stopped:
                self._metrics.interrupted.labels(stopped.reason).inc()
                code, why = _INTERRUPTED_STATUS[stopped.reason]
                raise RpcFailure(
                    code,
                    f"generation stopped after {stopped.completion_tokens} tokens: {why}",
                ) from None
            except GeneratorExit:
                # gRPC dropped the stream because the client went away.
                reason = signal.reason() or "cancelled"
                self._metrics.interrupted.labels(reason).inc()
                if reason in _INTERRUPTED_STATUS:
                    record.status, record.detail = _INTERRUPTED_STATUS[reason]
                raise
            except BackendError as failure:
                raise RpcFailure(failure.status, str(failure)) from None

    def _record_summary(self, summary: GenerationSummary, record: CallRecord) -> None:
        record.finish_reason = summary.finish_reason.value
        self._metrics.prompt_tokens.inc(summary.usage.prompt_tokens)
        if summary.usage.completion_tokens:
            self._metrics.time_to_first_token.observe(summary.usage.time_to_first_token_ms / 1000.0)
