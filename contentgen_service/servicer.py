"""The gRPC servicer: translation between protobuf messages and the service."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from contentgen_service.access_log import CallRecord
from contentgen_service.decoding import UndecodableRequest
from contentgen_service.errors import RpcFailure, aborting_on_failure
from contentgen_service.gen.contentgen.v1 import contentgen_pb2 as pb
from contentgen_service.gen.contentgen.v1 import contentgen_pb2_grpc as pb_grpc
from contentgen_service.metrics import ServiceMetrics
from contentgen_service.results import GenerationSummary, TextChunk
from contentgen_service.service import GenerationService
from contentgen_service.wire import finish_reason_to_proto, usage_to_proto

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ContentGeneration"].full_name


def summary_to_proto(request_id: str, summary: GenerationSummary) -> pb.GenerationSummary:
    """Return the last message of a stream."""
    return pb.GenerationSummary(
        request_id=request_id,
        finish_reason=finish_reason_to_proto(summary.finish_reason),
        usage=usage_to_proto(summary.usage),
        model=summary.model,
    )


class ContentGenerationServicer(pb_grpc.ContentGenerationServicer):
    """Implements contentgen.v1.ContentGeneration on top of GenerationService."""

    def __init__(self, service: GenerationService, metrics: ServiceMetrics) -> None:
        self._service = service
        self._metrics = metrics

    def Generate(
        self, request: pb.GenerateRequest | UndecodableRequest, context: grpc.ServicerContext
    ) -> pb.GenerateResponse:
        """Run a generation to the end and return all of its text."""
        if isinstance(request, UndecodableRequest):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message())
            raise AssertionError("context.abort always raises")
        with (
            aborting_on_failure(context),
            CallRecord(self._metrics, "Generate", request, context) as record,
        ):
            pieces = []
            summary = None
            for event in self._service.events(request, context, record):
                if isinstance(event, TextChunk):
                    pieces.append(event.text)
                else:
                    summary = event
            if summary is None:
                raise RpcFailure(grpc.StatusCode.INTERNAL, "generation ended without a summary")
            message = summary_to_proto(request.request_id, summary)
            return pb.GenerateResponse(
                request_id=request.request_id,
                text="".join(pieces),
                finish_reason=message.finish_reason,
                usage=message.usage,
                model=message.model,
            )

    def GenerateStream(
        self, request: pb.GenerateRequest | UndecodableRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.GenerateStreamResponse]:
        """Stream a generation's text as it is produced, then its summary."""
        if isinstance(request, UndecodableRequest):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message())
            raise AssertionError("context.abort always raises")
        with (
            aborting_on_failure(context),
            CallRecord(self._metrics, "GenerateStream", request, context) as record,
        ):
            for event in self._service.events(request, context, record):
                if isinstance(event, TextChunk):
                    yield pb.GenerateStreamResponse(
                        chunk=pb.TextChunk(
                            text=event.text,
                            tokens=event.tokens,
                            completion_tokens=event.completion_tokens,
                        )
                    )
                else:
                    yield pb.GenerateStreamResponse(summary=summary_to_proto(request.request_id, event))
