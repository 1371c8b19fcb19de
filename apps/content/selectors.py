"""Reads of content, always scoped to one user."""

from __future__ import annotations

from shardrouter.managers import ShardedQuerySet

from .models import Generation


def generation_list(*, user_id: int) -> ShardedQuerySet[Generation]:
    """The user's generations, newest first."""
    return Generation.objects.for_user(user_id).order_by("-created_at", "-id")


def generation_get(*, user_id: int, generation_id: int) -> Generation:
    """One of the user's generations; raises Generation.DoesNotExist for anyone else's."""
    return Generation.objects.for_user(user_id).get(id=generation_id)
