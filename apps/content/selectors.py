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


def generations_stalled(
    *, overdue_for: timedelta, claim_lease: timedelta, limit: int, allow_partial: bool = False
) -> list[StalledGeneration]:
    """Generations no job will pick up by itself, on every shard (scatter-gather; the sweeper's read).

    Queued with a job due more than ``overdue_for`` ago (its message was lost:
    broker down at creation, broker restarted, worker killed while holding it),
    or running under a claim older than ``claim_lease`` (its holder was killed)
    and not re-sent within ``overdue_for``. ``allow_partial`` skips shards that
    do not answer instead of raising ``ScatterGatherError``.
    """
    now = timezone.now()
    overdue = Q(dispatch_due_at__lt=now - overdue_for)
    stalled = Generation.objects.filter(
        Q(status=Generation.Status.QUEUED)
        & (overdue | Q(dispatch_due_at__isnull=True, updated_at__lt=now - overdue_for))
        | Q(status=Generation.Status.RUNNING, claimed_at__lt=now - claim_lease)
        & (overdue | Q(dispatch_due_at__isnull=True))
    )
    found = scatter(
        stalled,
        lambda qs: list(qs.order_by("updated_at").values_list("id", "user_id", "status")[:limit]),
        allow_partial=allow_partial,
    )
    rows = sorted(row for rows in found.results.values() for row in rows)
    return [StalledGeneration(generation_id, user_id, status) for generation_id, user_id, status in rows[:limit]]
