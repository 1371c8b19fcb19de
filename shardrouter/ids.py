"""Globally unique, time-ordered 64-bit IDs for sharded rows.

Layout (Snowflake / Instagram style), most significant bit first::

     1 bit   always 0, so IDs are positive PostgreSQL bigints
    41 bits  milliseconds since 2025-01-01T00:00:00Z (lasts until the year 2094)
    10 bits  worker ID, 0-1023, leased by each process from the control database
    12 bits  sequence within the millisecond (4096 IDs per ms per worker)

IDs from any process sort by creation time to the millisecond, and a row keeps
its ID when it moves between databases, so no per-database sequence is ever
used for a sharded table.

Uniqueness rests on three guarantees: no two live processes hold the same
worker ID (a lease row per worker ID in the control database, renewed well
before it expires and never used past its local expiry); one worker never
issues the same (millisecond, sequence) twice (a lock, plus a refusal to issue
IDs when the clock runs backwards instead of risking a repeat); and a worker ID
that changes hands is used by its new holder only for milliseconds after the
last one its previous holder could have used (the lease row keeps that
high-water mark, so a process on a host whose clock lags cannot repeat IDs of
the process that held the worker ID before it).
"""

from __future__ import annotations

import atexit
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from .errors import ClockMovedBackwardsError, ShardRouterError

EPOCH_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
TIMESTAMP_BITS = 41
WORKER_BITS = 10
SEQUENCE_BITS = 12
MAX_WORKER_ID = (1 << WORKER_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1
WORKER_SHIFT = SEQUENCE_BITS
TIMESTAMP_SHIFT = SEQUENCE_BITS + WORKER_BITS


@dataclass(frozen=True)
class DecodedId:
    timestamp_ms: int
    worker_id: int
    sequence: int


def compose_id(timestamp_ms: int, worker_id: int, sequence: int) -> int:
    offset = timestamp_ms - EPOCH_MS
    if not 0 <= offset < (1 << TIMESTAMP_BITS):
        raise ShardRouterError(f"Timestamp {timestamp_ms} ms is outside the ID epoch (2025-01-01 to 2094).")
    return (offset << TIMESTAMP_SHIFT) | (worker_id << WORKER_SHIFT) | sequence


def decode_id(value: int) -> DecodedId:
    """Split an ID into its timestamp (Unix ms), worker ID and sequence."""
    return DecodedId(
        timestamp_ms=(value >> TIMESTAMP_SHIFT) + EPOCH_MS,
        worker_id=(value >> WORKER_SHIFT) & MAX_WORKER_ID,
        sequence=value & MAX_SEQUENCE,
    )


class WorkerLease:
    """Where a generator gets its worker ID, and how long it may keep using it."""

    def acquire(self) -> tuple[int, float, int]:
        """Return (worker_id, seconds the lease is valid for from the moment this call began,
        the last millisecond any earlier holder of the worker ID may have used)."""
        raise NotImplementedError

    def renew(self, worker_id: int, last_ms: int) -> float | None:
        """Extend the lease, recording the last millisecond used; return its new validity in seconds,
        or None if it was lost."""
        raise NotImplementedError

    def release(self, worker_id: int, last_ms: int) -> None:
        """Give the worker ID back, recording the last millisecond used."""


class FixedWorker(WorkerLease):
    """A worker ID assigned by the deployment (SHARDROUTER_WORKER_ID), never expiring."""

    def __init__(self, worker_id: int) -> None:
        if not 0 <= worker_id <= MAX_WORKER_ID:
            raise ShardRouterError(f"Worker ID {worker_id} is out of range; expected 0 to {MAX_WORKER_ID}.")
        self.worker_id = worker_id

    def acquire(self) -> tuple[int, float, int]:
        return self.worker_id, float("inf"), 0

    def renew(self, worker_id: int, last_ms: int) -> float | None:
        return float("inf")


class ControlDatabaseLease(WorkerLease):
    """Lease worker IDs from the ``shardrouter_idworkerlease`` table in the control database."""

    _CLAIM = """
        INSERT INTO shardrouter_idworkerlease (worker_id, owner, expires_at, last_ms)
        SELECT g, %(owner)s, now() + make_interval(secs => %(ttl)s), 0
        FROM generate_series(0, %(max)s) AS g
        WHERE NOT EXISTS (
            SELECT 1 FROM shardrouter_idworkerlease l WHERE l.worker_id = g AND l.expires_at > now()
        )
        ORDER BY (g + %(offset)s) %% (%(max)s + 1)
        LIMIT 1
        ON CONFLICT (worker_id) DO UPDATE
            SET owner = EXCLUDED.owner,
                expires_at = EXCLUDED.expires_at,
                -- A released lease recorded its last millisecond (owner ''); a holder that died
                -- stopped issuing IDs before its lease expired.
                last_ms = CASE WHEN shardrouter_idworkerlease.owner = '' THEN shardrouter_idworkerlease.last_ms
                    ELSE GREATEST(
                        shardrouter_idworkerlease.last_ms,
                        (extract(epoch FROM shardrouter_idworkerlease.expires_at) * 1000)::bigint
                    ) END
            WHERE shardrouter_idworkerlease.expires_at <= now()
        RETURNING worker_id, last_ms
    """
    _RENEW = """
        UPDATE shardrouter_idworkerlease
        SET expires_at = now() + make_interval(secs => %(ttl)s), last_ms = GREATEST(last_ms, %(last_ms)s)
        WHERE worker_id = %(worker_id)s AND owner = %(owner)s RETURNING worker_id
    """

    def __init__(self, ttl_seconds: int) -> None:
        self.ttl = ttl_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def acquire(self) -> tuple[int, float, int]:
        from .control import control_connection

        for _attempt in range(20):
            with control_connection.cursor() as cur:
                cur.execute(
                    self._CLAIM,
                    {
                        "owner": self.owner,
                        "ttl": self.ttl,
                        "max": MAX_WORKER_ID,
                        "offset": random.randrange(MAX_WORKER_ID + 1),
                    },
                )
                row = cur.fetchone()
            if row is not None:
                return int(row[0]), float(self.ttl), int(row[1])
            time.sleep(random.uniform(0.001, 0.01))
        raise ShardRouterError(
            f"No free worker ID: all {MAX_WORKER_ID + 1} are leased. Stop idle processes or wait for leases to expire."
        )

    def renew(self, worker_id: int, last_ms: int) -> float | None:
        from .control import control_connection

        with control_connection.cursor() as cur:
            cur.execute(self._RENEW, {"ttl": self.ttl, "worker_id": worker_id, "owner": self.owner, "last_ms": last_ms})
            return float(self.ttl) if cur.fetchone() else None

    def release(self, worker_id: int, last_ms: int) -> None:
        from .control import control_connection

        try:
            with control_connection.cursor() as cur:
                # Keep the row: its high-water mark protects the next holder from a lagging clock.
                cur.execute(
                    "UPDATE shardrouter_idworkerlease SET owner = '', expires_at = now(), last_ms = GREATEST(last_ms, %s) "
                    "WHERE worker_id = %s AND owner = %s",
                    [last_ms, worker_id, self.owner],
                )
        except Exception:
            pass


class IdGenerator:
    """Thread-safe generator of 64-bit IDs for one process."""

    # Renew when half the lease is left; stop issuing IDs a safety margin before local expiry.
    SAFETY_FRACTION = 0.1
    # A newly leased worker ID waits this long at most for the clock to pass its previous holder's last ms.
    MAX_HANDOVER_WAIT_MS = 2000

    def __init__(self, lease: WorkerLease, clock_ms: Callable[[], int] | None = None) -> None:
        self._lease = lease
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self._worker_id: int | None = None
        self._renew_at = 0.0
        self._valid_until = 0.0
        self._last_ms = -1
        self._sequence = 0

    @property
    def worker_id(self) -> int | None:
        return self._worker_id

    def _ensure_lease(self) -> int:
        now = time.monotonic()
        if self._worker_id is not None and now < self._renew_at:
            return self._worker_id
        started = time.monotonic()
        validity = self._lease.renew(self._worker_id, self._last_ms) if self._worker_id is not None else None
        if validity is None:
            self._worker_id, validity, high_water_ms = self._lease.acquire()
            self._wait_past(high_water_ms)
            # The new worker ID's sequence space starts after everything its previous holder issued.
            self._last_ms, self._sequence = high_water_ms, MAX_SEQUENCE
        self._valid_until = started + validity * (1 - self.SAFETY_FRACTION)
        self._renew_at = started + validity / 2
        assert self._worker_id is not None
        return self._worker_id

    def _wait_past(self, high_water_ms: int) -> None:
        while (gap := high_water_ms - self._clock_ms()) >= 0:
            if gap > self.MAX_HANDOVER_WAIT_MS:
                raise ClockMovedBackwardsError(
                    f"Worker ID {self._worker_id} was used up to {high_water_ms} ms, {gap} ms ahead of this host's "
                    "clock; refusing to issue IDs that could repeat. Check NTP on this host."
                )
            time.sleep(min(gap + 1, 50) / 1000)

    def next_id(self) -> int:
        with self._lock:
            worker_id = self._ensure_lease()
            if time.monotonic() >= self._valid_until:
                raise ShardRouterError("The worker ID lease expired and could not be renewed; refusing to issue IDs.")
            now_ms = self._clock_ms()
            if now_ms < self._last_ms:
                raise ClockMovedBackwardsError(
                    f"The clock moved back {self._last_ms - now_ms} ms; refusing to issue IDs until it passes "
                    f"{self._last_ms} ms again. Check NTP on this host."
                )
            if now_ms == self._last_ms:
                self._sequence = (self._sequence + 1) & MAX_SEQUENCE
                if self._sequence == 0:
                    # 4096 IDs in this millisecond: wait for the next one rather than repeat.
                    while now_ms <= self._last_ms:
                        now_ms = self._clock_ms()
                        if now_ms < self._last_ms:
                            raise ClockMovedBackwardsError(
                                "The clock moved back while waiting for the next millisecond."
                            )
            else:
                self._sequence = 0
            self._last_ms = now_ms
            return compose_id(now_ms, worker_id, self._sequence)

    def release(self) -> None:
        with self._lock:
            if self._worker_id is not None:
                self._lease.release(self._worker_id, self._last_ms)
                self._worker_id = None


class _ProcessGenerator:
    """The process-wide generator, created on first use and again in each forked child."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generator: IdGenerator | None = None
        self._pid = os.getpid()

    def get(self) -> IdGenerator:
        if self._generator is None or self._pid != os.getpid():
            with self._lock:
                if self._generator is None or self._pid != os.getpid():
                    self._generator = IdGenerator(_default_lease())
                    self._pid = os.getpid()
        return self._generator

    def release(self) -> None:
        if self._generator is not None and self._pid == os.getpid():
            self._generator.release()


def _default_lease() -> WorkerLease:
    fixed = os.environ.get("SHARDROUTER_WORKER_ID")
    if fixed:
        try:
            return FixedWorker(int(fixed))
        except ValueError:
            raise ShardRouterError(
                f"SHARDROUTER_WORKER_ID={fixed!r} is not an integer from 0 to {MAX_WORKER_ID}."
            ) from None
    from .conf import get_settings

    return ControlDatabaseLease(get_settings().id_lease_seconds)


_process_generator = _ProcessGenerator()
atexit.register(_process_generator.release)


def new_id() -> int:
    """A new globally unique, time-ordered 64-bit ID (the default primary key of sharded models)."""
    return _process_generator.get().next_id()
