"""The sweeper: generations heal themselves, without an operator.

A job message can be lost (the broker was down when the row was created, the
broker restarted, a worker was killed while it held the message) and a claim
holder can die (worker killed mid-job, web process killed mid-stream). The
row itself is never lost: it is the outbox. Every ``SWEEP_INTERVAL_SECONDS``
the sweeper finds, on every shard, the rows nothing will run by itself and
sends their job again (``services.generation_redispatch``):

- ``queued`` rows whose job was due more than ``SWEEP_OVERDUE_SECONDS`` ago;
- ``running`` rows whose claim is older than the lease (``CLAIM_LEASE_SECONDS``).

Bound: a stranded generation is re-sent at most ``interval + overdue`` after
its job was due (lost message), or ``interval + lease`` after its last claim
(dead holder); it then finishes within one call. With the defaults (30 s, 30 s,
70 s) that is under two minutes. Re-sending is always safe: jobs claim before
they work, the re-sent message belongs to the row's current chain, and the
conditional update lets only one of several sweepers (one per worker) re-send.

It runs as a thread in every Celery worker's main process (``quantumquill/
celery.py`` registers it), so whatever starts workers (``make run``, the deploy
configuration) starts it; ``manage.py generations_requeue`` runs one pass by hand.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connections

from apps.observability import metrics

from .claims import claim_lease
from .selectors import StalledGeneration, generations_stalled
from .services import generation_redispatch

logger = logging.getLogger(__name__)

SWEEP_LIMIT = 10_000


def sweep_interval() -> float:
    return float(settings.CONTENTGEN["SWEEP_INTERVAL_SECONDS"])


def sweep_overdue() -> timedelta:
    return timedelta(seconds=settings.CONTENTGEN["SWEEP_OVERDUE_SECONDS"])


@dataclass
class SweepReport:
    """One pass: what was found stalled and what was re-sent."""

    stalled: list[StalledGeneration] = field(default_factory=list)
    redispatched: int = 0


def generations_sweep(
    *,
    overdue_for: timedelta | None = None,
    limit: int = SWEEP_LIMIT,
    dry_run: bool = False,
    allow_partial: bool = True,
) -> SweepReport:
    """Find the stalled generations on every shard and send their jobs again."""
    lease = claim_lease()
    overdue = sweep_overdue() if overdue_for is None else overdue_for
    report = SweepReport(
        generations_stalled(overdue_for=overdue, claim_lease=lease, limit=limit, allow_partial=allow_partial)
    )
    if dry_run:
        return report
    for item in report.stalled:
        if generation_redispatch(
            user_id=item.user_id, generation_id=item.generation_id, overdue_before=overdue, claim_lease=lease
        ):
            report.redispatched += 1
            metrics.generation_sweeper_redispatched.inc()
    return report


class Sweeper:
    """The sweeping loop, on a daemon thread; ``stop()`` ends it within one wait."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="generation-sweeper", daemon=True)

    def start(self) -> None:
        logger.info("generation sweeper: every %.0f s, re-sends jobs overdue by %s", self.interval, sweep_overdue())
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sweep_once()

    def sweep_once(self) -> None:
        try:
            report = generations_sweep()
        except Exception:
            # Database or broker trouble: the next pass tries again.
            logger.exception("generation sweeper: pass failed; retrying in %.0f s", self.interval)
            return
        finally:
            connections.close_all()  # this thread's connections; never held between passes
        if report.redispatched:
            logger.warning(
                "generation sweeper: re-sent %d of %d stalled generation(s)", report.redispatched, len(report.stalled)
            )
