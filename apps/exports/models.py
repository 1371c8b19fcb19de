"""Exports of generations as files. Rows live on the owner's shard next to the generation."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from shardrouter.models import ShardedModel


class Export(ShardedModel):
    """One version of one generation rendered in one format, stored in media storage under ``storage_key``.

    The key contains ``version`` (a hash of everything that shapes the file), so
    the object under a key never changes and no cache can serve a stale copy.
    """

    generation_id = models.BigIntegerField()
    format = models.CharField(max_length=8)
    version = models.CharField(max_length=32)
    storage_key = models.CharField(max_length=300)
    size_bytes = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    # Bumped each time the owner asks for this version again, so "latest" follows the owner's last request.
    requested_at = models.DateTimeField(default=timezone.now)

    class Meta(ShardedModel.Meta):
        constraints = [
            *ShardedModel.Meta.constraints,
            models.UniqueConstraint(
                fields=["user_id", "generation_id", "format", "version"], name="export_unique_version"
            ),
        ]
        indexes = [
            models.Index(fields=["user_id", "generation_id", "format", "-requested_at"], name="export_latest"),
        ]

    def __str__(self) -> str:
        return f"export {self.format} of generation {self.generation_id} ({self.version})"
