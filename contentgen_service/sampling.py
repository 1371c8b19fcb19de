"""Choosing the next token from a probability distribution.

Pure functions shared by every local backend: temperature scaling, nucleus
(top-p) truncation and seeded sampling.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Sequence


def seed_from_request_id(request_id: str) -> int:
    """Derive a 64-bit sampling seed from an idempotency key.

    A retried request (same ``request_id``) then samples the same text on any
    replica, without the replicas sharing state.
    """
    return int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big")


def sample_index(
    probabilities: Sequence[float],
    *,
    temperature: float,
    top_p: float,
    rng: random.Random,
) -> int:
    """Return the index of the chosen outcome.

    ``temperature`` 0 always picks the most probable outcome (the first one on
    ties); otherwise probabilities are raised to ``1 / temperature``,
    truncated to the smallest most-probable set whose mass reaches ``top_p``,
    renormalised and sampled with ``rng``.
    """
    if not probabilities:
        raise ValueError("cannot sample from an empty distribution")
    if temperature <= 0.0:
        return max(range(len(probabilities)), key=lambda i: (probabilities[i], -i))
    if temperature == 1.0:
        weights = list(probabilities)
    else:
        # Scaled in log space, relative to the peak, so that nothing underflows.
        log_peak = math.log(max(probabilities))
        weights = [math.exp((math.log(p) - log_peak) / temperature) if p > 0.0 else 0.0 for p in probabilities]
    order = sorted(range(len(weights)), key=lambda i: (-weights[i], i))
    total = sum(weights)
    kept: list[int] = []
    mass = 0.0
    for i in order:
        kept.append(i)
        mass += weights[i]
        if mass >= top_p * total:
            break
    threshold = rng.random() * mass
    running = 0.0
    for i in kept:
        running += weights[i]
        if running >= threshold:
            return i
    return kept[-1]
