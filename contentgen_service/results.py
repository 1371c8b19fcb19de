"""Value types shared by the server and the client (no gRPC, no Django)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FinishReason(enum.StrEnum):
    """Why a generation ended."""

    LENGTH = "length"
    """``max_tokens`` was reached."""
    STOP = "stop"
    """A stop sequence was produced, or the model ended the text."""
    CANCELLED = "cancelled"
    """The server ended the generation early (shutdown); the text so far is usable."""


@dataclass(frozen=True)
class Usage:
    """Token counts and timings of one generation, measured on the server."""

    prompt_tokens: int
    completion_tokens: int
    time_to_first_token_ms: float
    total_ms: float


@dataclass(frozen=True)
class TextChunk:
    """A piece of streamed text and the number of tokens it holds."""

    text: str
    tokens: int
    completion_tokens: int
    """Tokens generated so far, this chunk included."""


@dataclass(frozen=True)
class GenerationSummary:
    """How a generation ended: the last event of a stream."""

    finish_reason: FinishReason
    usage: Usage
    model: str
