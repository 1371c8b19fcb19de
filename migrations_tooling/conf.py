"""Tunables of the move engine, from ``settings.SHARDMOVE`` with documented defaults."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class MoveSettings:
    lease_seconds: float
    max_freeze: float
    max_lag: float
    lock_timeout: float
    verify_chunk_rows: int
    delete_batch_rows: int
    delete_pause: float
    changed_keys_in_freeze: int
    mirror_reads_share: float
    mirror_queue_size: int
    mirror_mismatch_window: float


def get_settings() -> MoveSettings:
    raw = getattr(settings, "SHARDMOVE", {})
    return MoveSettings(
        # A lease not renewed for this long is free; a running command renews it every third of it.
        lease_seconds=float(raw.get("LEASE_SECONDS", 15.0)),
        # Longest a cut-over may hold writes to the range (switch-writes --max-freeze).
        max_freeze=float(raw.get("MAX_FREEZE_SECONDS", 2.0)),
        # switch-reads/switch-writes refuse while replication is further behind than this.
        max_lag=float(raw.get("MAX_LAG_SECONDS", 1.0)),
        # How long the freeze may wait for in-flight writers; kept under deadlock_timeout (1 s).
        lock_timeout=float(raw.get("LOCK_TIMEOUT_SECONDS", 0.3)),
        verify_chunk_rows=int(raw.get("VERIFY_CHUNK_ROWS", 5000)),
        delete_batch_rows=int(raw.get("DELETE_BATCH_ROWS", 5000)),
        delete_pause=float(raw.get("DELETE_PAUSE_SECONDS", 0.02)),
        # Before freezing, re-verify changed rows until at most this many are left for the freeze.
        changed_keys_in_freeze=int(raw.get("CHANGED_KEYS_IN_FREEZE", 500)),
        # Share (0..1) of routed reads of a catching_up range also run on the target and compared.
        mirror_reads_share=min(1.0, max(0.0, float(raw.get("MIRROR_READS_SHARE", 0.0)))),
        # Mirrored reads waiting per process; more are dropped (and counted), never waited for.
        mirror_queue_size=max(1, int(raw.get("MIRROR_QUEUE_SIZE", 1000))),
        # switch-reads refuses while a mirrored read mismatched within this many seconds (unless --force).
        mirror_mismatch_window=float(raw.get("MIRROR_MISMATCH_WINDOW_SECONDS", 600.0)),
    )
