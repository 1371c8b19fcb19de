"""The local n-gram generator backend."""

from __future__ import annotations

import random
from collections.abc import Generator
from pathlib import Path

from contentgen_service.backends.base import GenerationRequest, StopSignal
from contentgen_service.backends.ngram.model import KneserNeyModel
from contentgen_service.backends.ngram.store import load_or_train
from contentgen_service.backends.ngram.text import Detokenizer, tokenize
from contentgen_service.sampling import sample_index


class NgramGenerator:
    """Continues prompts with a Kneser-Ney n-gram model of stdlib docstrings.

    Thread-safe: the model is read-only and each call has its own random
    generator and detokenizer.
    """

    def __init__(self, model: KneserNeyModel) -> None:
        self._model = model

    @classmethod
    def from_cache(cls, cache_dir: Path, *, order: int = 3) -> NgramGenerator:
        """Load the cached model for this interpreter, training it on first use."""
        return cls(load_or_train(cache_dir, order=order))

    @property
    def model_name(self) -> str:
        """Name reported to clients, e.g. ``ngram-3``."""
        return f"ngram-{self._model.order}"

    def count_tokens(self, text: str) -> int:
        """Return the number of word and punctuation tokens in ``text``."""
        return len(tokenize(text))

    def generate(self, request: GenerationRequest, stop: StopSignal) -> Generator[str, None, None]:
        """Yield the continuation of the prompt one token at a time (see TextGenerator)."""
        model = self._model
        rng = random.Random(request.seed)
        detokenizer = Detokenizer(request.prompt)
        context = model.context_for(tokenize(request.prompt))
        eos = model.eos
        while not stop.is_set():
            words, probabilities = model.distribution(context)
            word = words[
                sample_index(
                    probabilities,
                    temperature=request.temperature,
                    top_p=request.top_p,
                    rng=rng,
                )
            ]
            yield detokenizer.piece(model.vocabulary[word])
            if word == eos:
                # A finished paragraph: the next one starts afresh.
                context = model.context_for([])
            elif context:
                context = (*context[1:], word)
