"""Writes of content. Every write runs through run_sharded_write, so it rides out live data moves."""

from __future__ import annotations

from collections.abc import Sequence

from shardrouter.writes import run_sharded_write

from .models import Generation, UsageEvent


def generation_create(
    *,
    user_id: int,
    prompt: str,
    max_tokens: int = 200,
    temperature: float = 0.8,
    top_p: float = 0.95,
    seed: int | None = None,
    stop: Sequence[str] = (),
) -> Generation:
    """Store a new generation as queued, with its usage event, on the user's shard."""

    def work() -> Generation:
        generation = Generation.objects.for_user(user_id).create(
            user_id=user_id,
            prompt=prompt,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=list(stop),
        )
        UsageEvent.objects.for_user(user_id).create(
            user_id=user_id, kind=UsageEvent.Kind.GENERATION_REQUESTED, generation_id=generation.id
        )
        return generation

    return run_sharded_write(user_id=user_id, work=work)


def generation_delete(*, user_id: int, generation_id: int) -> None:
    """Delete one of the user's generations; raises Generation.DoesNotExist for anyone else's."""

    def work() -> None:
        deleted, _ = Generation.objects.for_user(user_id).filter(id=generation_id).delete()
        if not deleted:
            raise Generation.DoesNotExist(f"Generation {generation_id} does not exist for user {user_id}.")

    run_sharded_write(user_id=user_id, work=work)
