"""Tunables of the move engine, from ``settings.SHARDMOVE`` with documented defaults."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from .throttle_baseline import BASELINE_WINDOWS


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
    throttle: bool
    throttle_max_probe_ms: float | None
    throttle_latency_factor: float
    throttle_latency_slack_ms: float
    throttle_max_active: int | None
    throttle_interval: float
    throttle_baseline_windows: int
    throttle_max_replica_lag: float | dict[str, float] | None


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
        # The initial copy is held back while the source is over budget (start --no-throttle: full speed).
        throttle=bool(raw.get("THROTTLE", True)),
        # Budget for the p95 of the source probe (ms); None: the p95 measured before the copy, times the factor,
        # at least the slack above it.
        throttle_max_probe_ms=_optional_float(raw.get("THROTTLE_MAX_PROBE_MS")),
        throttle_latency_factor=max(1.0, float(raw.get("THROTTLE_LATENCY_FACTOR", 1.2))),
        throttle_latency_slack_ms=max(0.0, float(raw.get("THROTTLE_LATENCY_SLACK_MS", 0.1))),
        # Most active client backends on the source's server while copying; None: no limit.
        throttle_max_active=None if raw.get("THROTTLE_MAX_ACTIVE") is None else int(raw["THROTTLE_MAX_ACTIVE"]),
        # How often the controller compares the source with the budget and adjusts the copy's share of time.
        throttle_interval=max(0.1, float(raw.get("THROTTLE_INTERVAL_SECONDS", 0.5))),
        # Whole windows of probes `start` measures the baseline over before the copy (one window per second); the
        # second lowest counts. Fewer start sooner, but one slow window can then set the baseline.
        throttle_baseline_windows=max(1, int(raw.get("THROTTLE_BASELINE_WINDOWS", BASELINE_WINDOWS))),
        # Most seconds the source's streaming replicas may lag while copying: one number for every source, or
        # {source alias: seconds}; None: not watched (checked by ``throttle.replica_lag_setting``).
        throttle_max_replica_lag=raw.get("THROTTLE_MAX_REPLICA_LAG_SECONDS"),
    )


def _optional_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
