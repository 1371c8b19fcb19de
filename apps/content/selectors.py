"""Reads of content, always scoped to one user."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from shardrouter.managers import ShardedQuerySet
from shardrouter.scatter import scatter

from .models import Generation, UsageEvent


def generation_list(*, user_id: int) -> ShardedQuerySet[Generation]:
    """The user's generations, newest first."""
    return Generation.objects.for_user(user_id).order_by("-created_at", "-id")


def generation_get(*, user_id: int, generation_id: int) -> Generation:
    """One of the user's generations; raises Generation.DoesNotExist for anyone else's."""
    return Generation.objects.for_user(user_id).get(id=generation_id)


def generations_ever_requested(*, user_id: int) -> bool:
    """Whether the user ever asked for a generation (usage events outlive the generations they count)."""
    return UsageEvent.objects.for_user(user_id).filter(kind=UsageEvent.Kind.GENERATION_REQUESTED).exists()


@dataclass(frozen=True)
class StalledGeneration:
    generation_id: int
    user_id: int
    status: str


def generations_stalled(*, queued_for: timedelta, claim_lease: timedelta, limit: int) -> list[StalledGeneration]:
    """Generations no job will pick up by itself, on every shard (an operator read, scatter-gather).

    Queued for longer than ``queued_for`` (its job was lost, e.g. the broker
    was down at creation), or running under a claim older than ``claim_lease``
    (its holder was killed and its message is gone).
    """
    now = timezone.now()
    stalled = Generation.objects.filter(
        Q(status=Generation.Status.QUEUED, updated_at__lt=now - queued_for)
        | Q(status=Generation.Status.RUNNING, claimed_at__lt=now - claim_lease)
    )
    found = scatter(stalled, lambda qs: list(qs.order_by("updated_at").values_list("id", "user_id", "status")[:limit]))
    rows = sorted(row for rows in found.results.values() for row in rows)
    return [StalledGeneration(generation_id, user_id, status) for generation_id, user_id, status in rows[:limit]]
