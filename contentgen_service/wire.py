"""Conversions between the protobuf messages and the Python value types."""

from __future__ import annotations

from contentgen_service.gen.contentgen.v1 import contentgen_pb2 as pb
from contentgen_service.results import FinishReason, Usage

_TO_PROTO: dict[FinishReason, pb.FinishReason] = {
    FinishReason.LENGTH: pb.FINISH_REASON_LENGTH,
    FinishReason.STOP: pb.FINISH_REASON_STOP,
    FinishReason.CANCELLED: pb.FINISH_REASON_CANCELLED,
}
_FROM_PROTO: dict[int, FinishReason] = {value: reason for reason, value in _TO_PROTO.items()}


def finish_reason_to_proto(reason: FinishReason) -> pb.FinishReason:
    """Return the protobuf enum value of ``reason``."""
    return _TO_PROTO[reason]


def finish_reason_from_proto(value: int) -> FinishReason:
    """Return the FinishReason of a protobuf enum value.

    Raises ValueError for FINISH_REASON_UNSPECIFIED or a value this code does
    not know (a newer server); callers decide how to treat it.
    """
    try:
        return _FROM_PROTO[value]
    except KeyError:
        raise ValueError(f"unknown finish_reason {value} in a contentgen.v1 response") from None


def usage_to_proto(usage: Usage) -> pb.Usage:
    """Return ``usage`` as a protobuf message."""
    return pb.Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        time_to_first_token_ms=usage.time_to_first_token_ms,
        total_ms=usage.total_ms,
    )


def usage_from_proto(message: pb.Usage) -> Usage:
    """Return a protobuf Usage message as a Usage value."""
    return Usage(
        prompt_tokens=message.prompt_tokens,
        completion_tokens=message.completion_tokens,
        time_to_first_token_ms=message.time_to_first_token_ms,
        total_ms=message.total_ms,
    )
