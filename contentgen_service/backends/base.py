"""The interface every text generator backend implements."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Protocol

import grpc


@dataclass(frozen=True)
class GenerationRequest:
    """Validated sampling settings for one generation.

    Stop sequences and ``max_tokens`` are enforced by the caller of a backend
    (see :mod:`contentgen_service.generation`); backends receive them so that
    remote ones can stop early and save work.
    """

    prompt: str
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop: tuple[str, ...] = ()


class StopSignal(Protocol):
    """Tells a backend that nobody wants more tokens (cancel, deadline, shutdown)."""

    def is_set(self) -> bool:
        """Return True once generation should stop."""
        ...

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early (and returning True) when set."""
        ...


class TextGenerator(Protocol):
    """A language model that continues a prompt one token at a time."""

    @property
    def model_name(self) -> str:
        """Name reported to clients in responses, e.g. ``ngram-3``."""
        ...

    def count_tokens(self, text: str) -> int:
        """Return how many tokens ``text`` holds for this model."""
        ...

    def generate(self, request: GenerationRequest, stop: StopSignal) -> Generator[str, None, None]:
        """Yield the continuation of ``request.prompt``, one token's text at a time.

        Each yielded string is ready to append to the text so far (it carries
        its own leading space). The iterator may run past ``max_tokens``; the
        consumer closes it when done, and it must return promptly once
        ``stop.is_set()``. Failures raise :class:`BackendError`.
        """
        ...


class BackendError(Exception):
    """A backend failure with the gRPC status the client should see."""

    def __init__(self, message: str, *, status: grpc.StatusCode) -> None:
        super().__init__(message)
        self.status = status
