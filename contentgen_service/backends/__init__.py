"""Text generator backends, chosen by configuration."""

from __future__ import annotations

from pathlib import Path

from contentgen_service.backends.base import (
    BackendError,
    GenerationRequest,
    StopSignal,
    TextGenerator,
)
from contentgen_service.backends.openai import OpenAICompatibleGenerator, OpenAISettings

__all__ = [
    "BackendError",
    "GenerationRequest",
    "StopSignal",
    "TextGenerator",
    "build_generator",
]


def build_generator(
    backend: str,
    *,
    cache_dir: Path,
    ngram_order: int = 3,
    openai: OpenAISettings | None = None,
) -> TextGenerator:
    """Return the generator named ``backend`` ("ngram" or "openai").

    The n-gram model is loaded from ``cache_dir``, or trained and cached there
    on first use.
    """
    if backend == "ngram":
        from contentgen_service.backends.ngram.backend import NgramGenerator

        return NgramGenerator.from_cache(cache_dir, order=ngram_order)
    if backend == "openai":
        if openai is None:
            raise ValueError("the openai backend needs OpenAISettings")
        return OpenAICompatibleGenerator(openai)
    raise ValueError(f"unknown backend {backend!r}; expected 'ngram' or 'openai'")
