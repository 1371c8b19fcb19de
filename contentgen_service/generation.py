"""Running one generation: stop sequences, token limits, pacing and timings.

Every backend goes through :func:`generate_text`, so these rules hold the same
way for the local model and for a remote OpenAI-compatible server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Literal, Protocol

from contentgen_service.backends.base import (
    GenerationRequest,
    StopSignal,
    TextGenerator,
)
from contentgen_service.results import FinishReason, GenerationSummary, TextChunk, Usage

StopReason = Literal["cancelled", "deadline", "shutdown"]


class CallSignal(StopSignal, Protocol):
    """A stop signal that can also say why it fired."""

    def reason(self) -> StopReason | None:
        """Return why generation must stop, or None while it may go on."""
        ...


class GenerationInterrupted(Exception):
    """The text was cut short: the client left, its deadline passed, or the server is draining."""

    def __init__(self, reason: StopReason, completion_tokens: int) -> None:
        super().__init__(f"generation stopped ({reason}) after {completion_tokens} tokens")
        self.reason = reason
        self.completion_tokens = completion_tokens


class StopSequenceFilter:
    """Cuts streamed text before the first stop sequence.

    Text that might be the start of a stop sequence is held back until the
    next piece shows whether it is, so a client never receives part of one.
    """

    def __init__(self, stop_sequences: tuple[str, ...]) -> None:
        self._stops = tuple(s for s in stop_sequences if s)
        self._held = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        """Add a piece; return the text now safe to emit and whether a stop sequence was hit."""
        text = self._held + piece
        hits = [index for index in (text.find(stop) for stop in self._stops) if index >= 0]
        if hits:
            self._held = ""
            return text[: min(hits)], True
        keep = 0
        for stop in self._stops:
            for length in range(min(len(stop) - 1, len(text)), keep, -1):
                if text.endswith(stop[:length]):
                    keep = length
                    break
        self._held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep], False

    def flush(self) -> str:
        """Return the held-back text once no more pieces will come."""
        held, self._held = self._held, ""
        return held


def generate_text(
    generator: TextGenerator,
    request: GenerationRequest,
    signal: CallSignal,
    *,
    started: float,
    token_interval: float = 0.0,
    on_token: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.monotonic,
) -> Generator[TextChunk | GenerationSummary, None, None]:
    """Yield text chunks as the backend produces tokens, then one summary.

    ``started`` is the ``clock()`` reading when the call began (timings in the
    summary count from it). ``token_interval`` seconds are waited after each
    token: pacing for demos and tests, 0 in production. When ``signal`` fires
    (the client left, its deadline passed, or the server is draining)
    GenerationInterrupted is raised: a cut-short text never gets a summary, so
    nobody can mistake it for a finished one. The backend's
    iterator is always closed, which stops its work.
    """
    stops = StopSequenceFilter(request.stop)
    completion_tokens = 0
    unsent_tokens = 0
    first_token_at: float | None = None
    finish: FinishReason | None = None
    tokens = generator.generate(request, signal)
    try:
        for piece in tokens:
            completion_tokens += 1
            unsent_tokens += 1
            on_token()
            if first_token_at is None:
                first_token_at = clock()
            text, hit_stop = stops.feed(piece)
            if text:
                yield TextChunk(text=text, tokens=unsent_tokens, completion_tokens=completion_tokens)
                unsent_tokens = 0
            if hit_stop:
                finish = FinishReason.STOP
                break
            if completion_tokens >= request.max_tokens:
                finish = FinishReason.LENGTH
                break
            if token_interval > 0:
                signal.wait(token_interval)
            if signal.is_set():
                break
        else:
            if not signal.is_set():
                finish = FinishReason.STOP  # the backend ended the text itself
    finally:
        tokens.close()
    if finish is None:
        raise GenerationInterrupted(signal.reason() or "cancelled", completion_tokens)
    rest = stops.flush()  # empty after a stop sequence: it cleared what it held
    if rest:
        yield TextChunk(text=rest, tokens=unsent_tokens, completion_tokens=completion_tokens)
    finished_at = clock()
    yield GenerationSummary(
        finish_reason=finish,
        usage=Usage(
            prompt_tokens=generator.count_tokens(request.prompt),
            completion_tokens=completion_tokens,
            time_to_first_token_ms=((first_token_at or finished_at) - started) * 1000.0,
            total_ms=(finished_at - started) * 1000.0,
        ),
        model=generator.model_name,
    )
