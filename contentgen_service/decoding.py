"""Request decoding that turns undecodable bytes into INVALID_ARGUMENT.

grpcio answers ``INTERNAL "Exception deserializing request!"`` when a
method's deserializer raises, which tells a client that the server is broken
rather than that the request was. The handlers registered here decode with a
deserializer that never raises: bytes that are not a ``GenerateRequest`` become
an ``UndecodableRequest`` which the servicer refuses with INVALID_ARGUMENT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from contentgen_service.gen.contentgen.v1 import contentgen_pb2 as pb

SERVICE = "contentgen.v1.ContentGeneration"


@dataclass(frozen=True)
class UndecodableRequest:
    """What arrived instead of a GenerateRequest, and why it could not be read."""

    size: int
    reason: str

    def message(self) -> str:
        return (
            f"the request ({self.size} bytes) is not a valid contentgen.v1.GenerateRequest: {self.reason}; "
            "send a serialized GenerateRequest"
        )


def decode_generate_request(data: bytes) -> pb.GenerateRequest | UndecodableRequest:
    """Parse the bytes of a call; never raises."""
    try:
        return pb.GenerateRequest.FromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        return UndecodableRequest(len(data), str(exc) or type(exc).__name__)


def add_servicer(servicer: Any, server: grpc.Server) -> None:
    """Register ``servicer`` (Generate, GenerateStream) with the tolerant deserializer."""
    handlers = {
        "Generate": grpc.unary_unary_rpc_method_handler(
            servicer.Generate,
            request_deserializer=decode_generate_request,
            response_serializer=pb.GenerateResponse.SerializeToString,
        ),
        "GenerateStream": grpc.unary_stream_rpc_method_handler(
            servicer.GenerateStream,
            request_deserializer=decode_generate_request,
            response_serializer=pb.GenerateStreamResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
