"""User-owned content tables. They live on the shards, keyed by the owner's user ID."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from shardrouter.models import ShardedModel

# Input limits: the API contract's, within what the generation service accepts by default
# (prompt up to 8000 characters, max_tokens 1..1024, up to 4 stop sequences of 1..64 characters).
PROMPT_MAX_CHARS = 4000
MAX_TOKENS_LIMIT = 1024
STOP_SEQUENCES_MAX = 4
# Nucleus sampling needs some probability mass; the web form and the API both start here.
TOP_P_MIN = 0.01
STOP_SEQUENCE_MAX_CHARS = 32


class Generation(ShardedModel):
    """One request to generate text, and its result."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    # Idempotency key sent to the generation service: a retried job never produces a second result.
    request_id = models.UUIDField(default=uuid.uuid4, editable=False)
    prompt = models.TextField()
    max_tokens = models.PositiveIntegerField(default=200)
    temperature = models.FloatField(default=0.8)
    top_p = models.FloatField(default=0.95)
    seed = models.BigIntegerField(null=True, blank=True)
    stop = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    output = models.TextField(blank=True)
    error = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=16, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # The claim: whoever moved the row from queued to running (a Celery job or a live stream) holds this
    # token, and only the holder may store the result. A claim older than the lease may be taken over.
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    claimed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Claims so far (jobs and live streams).")
    claimed_by = models.CharField(max_length=8, blank=True, default="", help_text="job or stream")
    # The outbox: the job chain that owns the row's future. Each dispatch (creation, a retry, the sweeper)
    # records its token and when its job is due; a job carrying another token is stale and does nothing,
    # so one generation never has two chains. NULL: no job awaits it (a live stream holds it, or none).
    dispatch_token = models.UUIDField(null=True, blank=True, editable=False)
    dispatch_due_at = models.DateTimeField(null=True, blank=True)
    # Idempotency-Key of the API request that created it: the same key from the same user returns this row.
    idempotency_key = models.CharField(max_length=255, blank=True, default="")
    # Reported by the generation service with the result.
    model_name = models.CharField(max_length=200, blank=True)
    time_to_first_token_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField(null=True, blank=True)

    class Meta(ShardedModel.Meta):
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user_id", "-created_at", "-id"], name="generation_user_recent"),
            # The sweeper's read every interval: only unfinished rows, a small part of the table.
            models.Index(
                fields=["status", "dispatch_due_at"],
                name="generation_unfinished",
                condition=models.Q(status__in=["queued", "running"]),
            ),
        ]
        constraints = [
            *ShardedModel.Meta.constraints,
            models.UniqueConstraint(fields=["user_id", "request_id"], name="generation_unique_request"),
            models.UniqueConstraint(
                fields=["user_id", "idempotency_key"],
                condition=~models.Q(idempotency_key=""),
                name="generation_unique_idempotency_key",
            ),
        ]

    def __str__(self) -> str:
        return f"generation {self.id} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES

    @property
    def title(self) -> str:
        first_line = self.prompt.strip().splitlines()[0] if self.prompt.strip() else "(empty prompt)"
        return first_line if len(first_line) <= 80 else first_line[:77] + "..."


FINISHED_STATUSES = frozenset({Generation.Status.SUCCEEDED, Generation.Status.FAILED, Generation.Status.CANCELLED})


class UsageEvent(ShardedModel):
    """Metering: one row per billable event, on the owner's shard next to the generation it counts."""

    class Kind(models.TextChoices):
        GENERATION_REQUESTED = "generation_requested", "Generation requested"
        GENERATION_COMPLETED = "generation_completed", "Generation completed"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    generation_id = models.BigIntegerField(null=True, blank=True)
    # generation_completed: prompt plus completion tokens (what a generation costs); 0 for requests.
    tokens = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta(ShardedModel.Meta):
        indexes = [models.Index(fields=["user_id", "created_at"], name="usage_user_time")]
