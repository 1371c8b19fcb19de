"""shardrouter's own tables (control database) and the base class for sharded models."""

from __future__ import annotations

from typing import ClassVar

from django.db import models

from .ids import new_id
from .managers import ShardedManager


class ShardMapRevision(models.Model):
    """One version of the shard map. The newest row is the map in force; older rows are its history.

    Versions are primary keys, so two operators applying a change on top of the
    same version cannot both succeed: the second insert conflicts.
    """

    version = models.PositiveBigIntegerField(primary_key=True)
    ranges = models.JSONField(help_text="[{lo, hi, alias, read_alias}, ...] sorted by lo")
    reason = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        managed = False  # created by migration 0001 with SQL; never flushed (see there)
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"shard map v{self.version}"


class IdWorkerLease(models.Model):
    """A worker ID (the middle 10 bits of every generated ID) leased to one process."""

    worker_id = models.SmallIntegerField(primary_key=True)
    owner = models.CharField(max_length=200)
    expires_at = models.DateTimeField()
    # The last millisecond any holder may have used; a new holder starts after it (see ids.py).
    last_ms = models.BigIntegerField(default=0)

    class Meta:
        managed = False  # created by migration 0001 with SQL; never flushed (see there)

    def __str__(self) -> str:
        return f"worker {self.worker_id} leased to {self.owner}"


class ShardedModel(models.Model):
    """Base for user-owned tables that live on the shards.

    Rows carry the owner's user ID as a plain integer (no cross-database foreign
    key) and a globally unique, time-ordered 64-bit ID issued by the
    application, so a row keeps its ID when a live move copies it to another
    database. The ``(id, user_id)`` unique constraint is the replica identity
    that logical replication with a row filter on ``user_id`` needs.
    """

    shard_key: ClassVar[str] = "user_id"

    id = models.BigIntegerField(primary_key=True, default=new_id, editable=False)
    user_id = models.BigIntegerField(db_index=True)

    objects = ShardedManager()

    class Meta:
        abstract = True
        constraints = [
            models.UniqueConstraint(fields=["id", "user_id"], name="%(app_label)s_%(class)s_shard_identity"),
        ]
