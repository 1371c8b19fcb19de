"""A word-level n-gram language model with interpolated Kneser-Ney smoothing.

The probability of word ``w`` after context ``h`` mixes the counts of every
context length, longest first (Chen & Goodman 1998, "An empirical study of
smoothing techniques for language modeling", section 3.5)::

    P_k(w | h) = max(c_k(h, w) - D_k, 0) / c_k(h)  +  D_k * N_k(h) / c_k(h) * P_{k-1}(w | h')

where ``h'`` drops the oldest word of ``h``, ``N_k(h)`` is the number of
distinct words seen after ``h``, and ``D_k = n1 / (n1 + 2 * n2)`` is estimated
from the number of n-grams seen once (n1) and twice (n2). The highest order
counts occurrences; lower orders count *distinct left contexts* (a word that
only ever follows one other word, like "Francisco", gets little weight on its
own). The lowest order interpolates with the uniform distribution, so every
word keeps some probability. A context never seen in training passes all of
its weight to the next shorter context: this is how unseen prompt words back
off.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from contentgen_service.backends.ngram.text import BOS, EOS

UNKNOWN = -1

# How many continuations of each context length are considered when sampling.
# The words outside this set share a negligible amount of probability (they
# only enter through the lowest orders), and leaving them out keeps a sampling
# step at a few hundred dictionary lookups instead of the whole vocabulary.
_CANDIDATES_PER_CONTEXT = 200
_CANDIDATES_FROM_UNIGRAMS = 50


@dataclass(frozen=True)
class KneserNeyModel:
    """A trained model. Build it with :func:`train`; it is immutable afterwards."""

    order: int
    vocabulary: tuple[str, ...]
    # followers[k] maps a context of k words (k = 0 .. order-1) to the counts of
    # the words that followed it, most frequent first; totals[k] holds the sums.
    # Plain dicts and tuples keep the pickled model quick to load.
    followers: tuple[dict[tuple[int, ...], dict[int, int]], ...]
    totals: tuple[dict[tuple[int, ...], int], ...]
    discounts: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {word: i for i, word in enumerate(self.vocabulary)})

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state.pop("_index", None)
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    @property
    def bos(self) -> int:
        """Identifier of the start-of-paragraph marker."""
        return self.word_id(BOS)

    @property
    def eos(self) -> int:
        """Identifier of the end-of-paragraph marker."""
        return self.word_id(EOS)

    def word_id(self, word: str) -> int:
        """Return a word's identifier, trying other capitalizations, or UNKNOWN."""
        index: dict[str, int] = self.__dict__["_index"]
        for variant in (word, word.lower(), word.capitalize()):
            if variant in index:
                return index[variant]
        return UNKNOWN

    def context_for(self, words: Sequence[str]) -> tuple[int, ...]:
        """Return the model context (last ``order - 1`` word ids) after ``words``."""
        width = self.order - 1
        ids = [self.word_id(word) for word in words[-width:]] if width else []
        return tuple([self.bos] * (width - len(ids)) + ids)

    def _levels(self, context: tuple[int, ...]) -> list[tuple[dict[int, int], float, float, float]]:
        """Per seen context length, shortest first: (followers, discount, 1/total, backoff weight)."""
        levels = []
        for k in range(self.order):
            key = context[len(context) - k :] if k else ()
            seen_after = self.followers[k].get(key)
            if seen_after is None:
                continue  # unseen context: all weight goes to the shorter one
            total = self.totals[k][key]
            discount = self.discounts[k]
            levels.append((seen_after, discount, 1.0 / total, discount * len(seen_after) / total))
        return levels

    def _interpolate(self, word: int, levels: list[tuple[dict[int, int], float, float, float]]) -> float:
        p = 1.0 / len(self.vocabulary)
        for seen_after, discount, inverse_total, backoff in levels:
            seen = seen_after.get(word, 0)
            p = (seen - discount if seen > discount else 0.0) * inverse_total + backoff * p
        return p

    def probability(self, word: int, context: tuple[int, ...]) -> float:
        """Return P(word | context) under interpolated Kneser-Ney."""
        return self._interpolate(word, self._levels(context))

    def distribution(self, context: tuple[int, ...]) -> tuple[list[int], list[float]]:
        """Return the candidate word ids after ``context`` (ascending) and their probabilities."""
        levels = self._levels(context)
        chosen: set[int] = set()
        for level, (seen_after, *_) in enumerate(levels):
            # Level 0 is the unigram table (its empty context is always seen).
            limit = _CANDIDATES_FROM_UNIGRAMS if level == 0 else _CANDIDATES_PER_CONTEXT
            chosen.update(itertools.islice(seen_after, limit))
        chosen.discard(self.bos)
        words = sorted(chosen)
        return words, [self._interpolate(word, levels) for word in words]


def _discount(counts: Iterable[int]) -> float:
    histogram = Counter(count for count in counts if count <= 2)
    n1, n2 = histogram[1], histogram[2]
    if n1 == 0:
        return 0.5
    return min(max(n1 / (n1 + 2 * n2), 0.05), 0.95)


def train(sentences: Iterable[list[str]], order: int = 3) -> KneserNeyModel:
    """Estimate an interpolated Kneser-Ney model of the given order.

    Each sentence is padded with ``order - 1`` start markers and one end
    marker, so the model also learns how paragraphs begin and end.
    """
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    index: dict[str, int] = {BOS: 0, EOS: 1}
    ngrams: Counter[tuple[int, ...]] = Counter()
    padding = [0] * (order - 1)
    for sentence in sentences:
        ids = padding + [index.setdefault(word, len(index)) for word in sentence] + [1]
        ngrams.update(zip(*(ids[k:] for k in range(order)), strict=False))

    # counts_by_order[n] holds n-gram counts: raw for the highest order,
    # numbers of distinct preceding words for the lower ones.
    counts_by_order: dict[int, Counter[tuple[int, ...]]] = {order: ngrams}
    for n in range(order - 1, 0, -1):
        counts_by_order[n] = Counter(gram[1:] for gram in counts_by_order[n + 1])

    followers = []
    totals = []
    discounts = []
    for n in range(1, order + 1):
        grouped: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        for gram, count in counts_by_order[n].items():
            grouped.setdefault(gram[:-1], []).append((gram[-1], count))
        by_context: dict[tuple[int, ...], dict[int, int]] = {}
        for context, pairs in grouped.items():
            pairs.sort(key=lambda pair: (-pair[1], pair[0]))
            by_context[context] = dict(pairs)
        followers.append(by_context)
        totals.append({context: sum(seen.values()) for context, seen in by_context.items()})
        discounts.append(_discount(counts_by_order[n].values()))
    vocabulary = tuple(sorted(index, key=index.__getitem__))
    return KneserNeyModel(
        order=order,
        vocabulary=vocabulary,
        followers=tuple(followers),
        totals=tuple(totals),
        discounts=tuple(discounts),
    )
