"""State of live data moves. Global tables: they live only in the control database.

Everything a crashed or interrupted command needs to resume is here; the
replication objects, fences and rows on the shard databases are re-inspected
on every run rather than trusted from this state alone.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Phase(models.TextChoices):
    COPYING = "copying", "copying"
    CATCHING_UP = "catching_up", "catching up"
    READS_SWITCHED = "reads_switched", "reads switched"
    WRITES_SWITCHED = "writes_switched", "writes switched"
    COMPLETE = "complete", "complete"
    CANCELLED = "cancelled", "cancelled"
    ROLLED_BACK = "rolled_back", "rolled back"


# A move in one of these phases owns its range: no other move or map edit may touch it.
ACTIVE_PHASES = (
    Phase.COPYING,
    Phase.CATCHING_UP,
    Phase.READS_SWITCHED,
    Phase.WRITES_SWITCHED,
    Phase.ROLLED_BACK,
)


class MoveRange(models.Model):
    """One move of user IDs ``[lo, hi)`` from ``source`` to ``target`` for every sharded table."""

    lo = models.BigIntegerField()
    hi = models.BigIntegerField()
    source = models.CharField(max_length=100)
    target = models.CharField(max_length=100)
    phase = models.CharField(max_length=20, choices=Phase.choices, default=Phase.COPYING)
    # The step inside the phase (set while a command works, cleared when it finishes).
    step = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    phase_changed_at = models.DateTimeField(auto_now_add=True)
    copy_started_at = models.DateTimeField(null=True, blank=True)
    copy_finished_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # The changed-rows baseline: every row of the range that has not changed (on ``watermark_alias``,
    # the database taking writes) since this pg_snapshot is known to be equal on both sides.
    watermark_alias = models.CharField(max_length=100, blank=True)
    watermark_snapshot = models.CharField(max_length=4000, blank=True)
    watermark_set_at = models.DateTimeField(null=True, blank=True)
    # The forward subscription's oid names the table-sync slots it may leave on the source if dropped mid-copy.
    subscription_oid = models.BigIntegerField(null=True, blank=True)
    # The throttled copy: its budget (``throttle.ThrottleConfig``) and what its controller last saw and did.
    throttle = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(hi__gt=models.F("lo")), name="moverange_not_empty"),
            models.CheckConstraint(condition=~Q(source=models.F("target")), name="moverange_two_databases"),
        ]

    def __str__(self) -> str:
        return f"move {self.id} [{self.lo}, {self.hi}) {self.source} -> {self.target} ({self.phase})"

    @property
    def writes_on_target(self) -> bool:
        return self.phase in (Phase.WRITES_SWITCHED, Phase.COMPLETE)

    @property
    def primary(self) -> str:
        """The database that takes the range's writes in the current phase."""
        return self.target if self.writes_on_target else self.source

    @property
    def replica(self) -> str:
        return self.source if self.writes_on_target else self.target


class MoveTable(models.Model):
    """Copy progress of one sharded table in one move."""

    move = models.ForeignKey(MoveRange, on_delete=models.CASCADE, related_name="tables")
    table = models.CharField(max_length=200)
    rows_estimated = models.BigIntegerField(default=0)
    rows_exact = models.BooleanField(default=False)
    bytes_estimated = models.BigIntegerField(default=0)
    rows_copied = models.BigIntegerField(default=0)
    sync_state = models.CharField(max_length=20, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["move", "table"]
        constraints = [models.UniqueConstraint(fields=["move", "table"], name="movetable_unique")]

    def __str__(self) -> str:
        return f"{self.table} of move {self.move_id}"


class MoveEvent(models.Model):
    """The move's journal: every step taken, with timings (cut-over freezes, batches, errors)."""

    move = models.ForeignKey(MoveRange, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=40)
    message = models.TextField()
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["move", "id"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.kind}: {self.message}"


class VerifyRun(models.Model):
    """One full comparison of the range on both sides, chunk by chunk (resumable)."""

    class Outcome(models.TextChoices):
        RUNNING = "running", "running"
        PASSED = "passed", "passed"
        FAILED = "failed", "failed"

    move = models.ForeignKey(MoveRange, on_delete=models.CASCADE, related_name="verify_runs")
    primary = models.CharField(max_length=100)
    replica = models.CharField(max_length=100)
    snapshot = models.CharField(max_length=4000, help_text="pg_snapshot of the primary when the run started")
    chunk_rows = models.PositiveIntegerField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.RUNNING)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rows_checked = models.BigIntegerField(default=0)
    mismatches = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["move", "id"]

    def __str__(self) -> str:
        return f"verify run {self.id} of move {self.move_id} ({self.outcome})"


class VerifyChunk(models.Model):
    """Counts and checksums of one chunk of one table: IDs ``[id_lo, id_hi)`` within the move's range."""

    class Outcome(models.TextChoices):
        MATCH = "match", "match"
        CHANGING = "changing", "changed while compared (re-checked at cut-over)"
        MISMATCH = "mismatch", "mismatch"

    run = models.ForeignKey(VerifyRun, on_delete=models.CASCADE, related_name="chunks")
    table = models.CharField(max_length=200)
    seq = models.PositiveIntegerField()
    id_lo = models.BigIntegerField()
    id_hi = models.BigIntegerField(null=True, blank=True, help_text="NULL: up to the end of the table")
    primary_rows = models.BigIntegerField()
    primary_sum = models.DecimalField(max_digits=40, decimal_places=0)
    replica_rows = models.BigIntegerField()
    replica_sum = models.DecimalField(max_digits=40, decimal_places=0)
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    checked_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "table", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "table", "seq"], name="verifychunk_unique")]

    def __str__(self) -> str:
        return f"{self.table} chunk {self.seq} ({self.outcome})"


class LagSample(models.Model):
    """Replication lag of a move as a command that drives it saw it (the console draws these over time)."""

    move = models.ForeignKey(MoveRange, on_delete=models.CASCADE, related_name="lag_samples")
    at = models.DateTimeField(auto_now_add=True)
    phase = models.CharField(max_length=20)
    lag_bytes = models.BigIntegerField(null=True, blank=True)
    lag_seconds = models.FloatField(null=True, blank=True)
    rows_copied = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["move", "id"]
        indexes = [models.Index(fields=["move", "at"], name="lagsample_move_at")]

    def __str__(self) -> str:
        return f"lag of move {self.move_id} at {self.at:%H:%M:%S}: {self.lag_bytes} B"


class MirrorStats(models.Model):
    """Mirrored reads of a move (reads of the range also run on the target while catching up), summed."""

    move = models.OneToOneField(MoveRange, on_delete=models.CASCADE, related_name="mirror_stats")
    reads = models.BigIntegerField(default=0)
    mismatches = models.BigIntegerField(default=0)
    dropped = models.BigIntegerField(default=0)  # sampled but not mirrored: the bounded queue was full
    source_seconds = models.FloatField(default=0.0)
    target_seconds = models.FloatField(default=0.0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"mirrored reads of move {self.move_id}: {self.reads} ({self.mismatches} mismatching)"


class MirrorMismatch(models.Model):
    """A mirrored read whose rows differed on the target after replication had caught up. No row data is kept."""

    move = models.ForeignKey(MoveRange, on_delete=models.CASCADE, related_name="mirror_mismatches")
    at = models.DateTimeField(auto_now_add=True)
    table = models.CharField(max_length=200)
    call_site = models.CharField(max_length=500)
    source_rows = models.IntegerField()
    target_rows = models.IntegerField()
    lag_bytes = models.BigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["move", "id"]

    def __str__(self) -> str:
        return f"mirror mismatch of move {self.move_id} at {self.call_site}"
