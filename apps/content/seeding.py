"""Seeded history for demo and load-test accounts: finished generations that were never queued.

Load tests need users who already have past generations to list and open.
Going through ``generation_create`` would queue every one of them for the
generation service, so seeded history is written directly as finished work.
"""

from __future__ import annotations

import random
from datetime import timedelta

from django.utils import timezone

from shardrouter.writes import run_sharded_write

from .models import Generation, UsageEvent

SEED_PROMPTS = (
    "Write a product description for a solar-powered kettle.",
    "Summarise why databases are sharded by user ID.",
    "Draft a friendly reminder email about an unpaid invoice.",
    "Explain logical replication to a new engineer in three sentences.",
    "Give five title ideas for a blog post about load testing.",
    "Describe a rainy afternoon in a small harbour town.",
    "List the pros and cons of server-sent events for live updates.",
    "Write a haiku about a queue that never empties.",
)
SEED_SENTENCES = (
    "The module provides a small interface for the common case.",
    "Each request is handled by the worker that owns the key.",
    "Results are cached until the underlying data changes.",
    "The default value is used when the argument is omitted.",
    "A new connection is opened only when the pool is empty.",
    "Errors are reported with the name of the field that caused them.",
    "The text is split into paragraphs before it is rendered.",
    "Every change is recorded so that it can be undone later.",
)
HISTORY_DAYS = 30


def _output(rng: random.Random) -> str:
    return " ".join(rng.choice(SEED_SENTENCES) for _ in range(rng.randint(3, 12)))


def generations_seed_history(*, user_id: int, count: int) -> int:
    """Top the user's generations up to ``count`` finished ones spread over the last 30 days.

    Returns how many were created (0 when the user already has ``count`` or
    more, whatever their status), so re-running adds nothing. The texts come
    from a generator seeded with the user ID: the same user gets the same
    history on every machine.
    """

    def work() -> int:
        existing = Generation.objects.for_user(user_id).count()
        missing = max(count - existing, 0)
        if not missing:
            return 0
        rng = random.Random(user_id * 7919 + existing)
        now = timezone.now()
        generations = []
        for _ in range(missing):
            created = now - timedelta(seconds=rng.uniform(60, HISTORY_DAYS * 86400))
            output = _output(rng)
            generations.append(
                Generation(
                    user_id=user_id,
                    prompt=rng.choice(SEED_PROMPTS),
                    max_tokens=200,
                    status=Generation.Status.SUCCEEDED,
                    output=output,
                    finish_reason="length",
                    prompt_tokens=rng.randint(8, 20),
                    completion_tokens=len(output.split()),
                    created_at=created,
                    started_at=created,
                    completed_at=created + timedelta(seconds=rng.uniform(0.2, 3.0)),
                )
            )
        Generation.objects.for_user(user_id).bulk_create(generations)
        UsageEvent.objects.for_user(user_id).bulk_create(
            UsageEvent(
                user_id=user_id,
                kind=UsageEvent.Kind.GENERATION_COMPLETED,
                generation_id=generation.id,
                tokens=generation.completion_tokens,
                created_at=generation.completed_at or generation.created_at,
            )
            for generation in generations
        )
        return missing

    return run_sharded_write(user_id=user_id, work=work)
