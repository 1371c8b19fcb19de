"""Cluster state that costs queries (shards, queue depth, moves), measured by one process per interval.

Every web worker answers ``/metrics``, and Prometheus may scrape several app
servers: if each measured the cluster on each scrape, the databases would see
(workers x servers) probes per interval. Instead the snapshot lives in the
shared cache: the scrape that finds it older than ``QQ_METRICS_CLUSTER_INTERVAL``
takes a short Redis lock (``SET NX``), measures, and stores it; every other
scrape renders the stored snapshot. ``qq_cluster_snapshot_age_seconds`` says
how old what you see is.

What is measured, all read-only: each database's reachability, latency and
size; the broker's queue depth; every active move's phase, copy progress,
replication lag and verification result (``migrations_tooling.selectors``);
and the freeze of every cut-over recorded in the moves' journals, as a
histogram.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from celery import current_app as celery_app  # the project's app (quantumquill.celery)
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from migrations_tooling.models import MoveEvent, MoveRange, Phase, VerifyRun
from migrations_tooling.selectors import move_status, moves_to_show

from .probes import database_probe, run_probes
from .readiness import readiness_probes

logger = logging.getLogger(__name__)

SNAPSHOT_KEY = "observability:cluster:snapshot"
LOCK_KEY = "observability:cluster:lock"
QUEUES = ("celery",)
FREEZE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Bounded: the freeze histogram reads the newest cut-overs only.
FREEZE_HISTORY = 1000


@dataclass
class MoveSnapshot:
    id: int
    source: str
    target: str
    phase: str
    phase_seconds: float
    rows_copied: int
    rows_total: int
    lag_bytes: int | None
    lag_seconds: float | None
    subscription_errors: int
    verify_mismatches: int


@dataclass
class Snapshot:
    taken_at: float
    took_seconds: float
    databases: dict[str, dict[str, Any]] = field(default_factory=dict)
    dependencies: dict[str, dict[str, Any]] = field(default_factory=dict)
    queues: dict[str, int | None] = field(default_factory=dict)
    moves: list[MoveSnapshot] = field(default_factory=list)
    moves_by_phase: dict[str, int] = field(default_factory=dict)
    freezes: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Snapshot:
        data = json.loads(raw)
        data["moves"] = [MoveSnapshot(**m) for m in data["moves"]]
        return cls(**data)


def interval() -> float:
    return float(settings.QQ_METRICS["CLUSTER_INTERVAL"])


def snapshot_take() -> Snapshot:
    """Measure the cluster now (read-only). Each part fails on its own: a down shard is a 0, not an error."""
    started = time.monotonic()
    snap = Snapshot(taken_at=time.time(), took_seconds=0.0)
    probes = {f"database:{alias}": database_probe(alias, measure_size=True) for alias in settings.DATABASES}
    probes.update({name: probe for name, probe in readiness_probes().items() if not name.startswith("database:")})
    for name, result in run_probes(probes).items():
        if name.startswith("database:"):
            alias = name.removeprefix("database:")
            snap.databases[alias] = {"up": result.ok, "seconds": result.seconds, "size_bytes": result.value}
        else:
            snap.dependencies[name] = {"up": result.ok, "seconds": result.seconds}
    for queue in QUEUES:
        snap.queues[queue] = _queue_length(queue, snap.errors)
    if snap.databases.get("default", {}).get("up"):
        _moves(snap)
    snap.took_seconds = time.monotonic() - started
    return snap


def _queue_length(queue: str, errors: list[str]) -> int | None:
    try:
        with celery_app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=0, timeout=1)
            return int(conn.default_channel.queue_declare(queue=queue, passive=True).message_count)
    except Exception as exc:
        errors.append(f"queue {queue}: {type(exc).__name__}: {exc}")
        return None


def _moves(snap: Snapshot) -> None:
    try:
        for phase in Phase:
            snap.moves_by_phase[phase.value] = MoveRange.objects.filter(phase=phase).count()
        now = timezone.now()
        for move in moves_to_show(all_moves=False):
            status = move_status(move)
            run = VerifyRun.objects.filter(move=move).order_by("-id").first()
            snap.moves.append(
                MoveSnapshot(
                    id=move.id,
                    source=move.source,
                    target=move.target,
                    phase=status.phase,
                    phase_seconds=(now - status.phase_changed_at).total_seconds(),
                    rows_copied=status.rows_copied,
                    rows_total=status.rows_total,
                    lag_bytes=status.lag_bytes,
                    lag_seconds=status.lag_seconds,
                    subscription_errors=status.subscription_errors,
                    verify_mismatches=len(run.mismatches) if run is not None else 0,
                )
            )
        events = MoveEvent.objects.filter(kind="cut-over").order_by("-id").values_list("data", flat=True)
        snap.freezes = [float(data["freeze"]) for data in events[:FREEZE_HISTORY] if "freeze" in (data or {})]
    except Exception as exc:  # a shard of a move being down must not hide everything else
        logger.warning("cluster metrics: cannot read moves: %s", exc)
        snap.errors.append(f"moves: {type(exc).__name__}: {exc}")


def snapshot_current(*, now: float | None = None) -> Snapshot | None:
    """The stored snapshot, refreshed first if it is older than the interval and no one else is on it."""
    now = time.time() if now is None else now
    raw = cache.get(SNAPSHOT_KEY)
    snap = Snapshot.from_json(raw) if raw else None
    if snap is not None and now - snap.taken_at < interval():
        return snap
    # Held for a little longer than a measurement can take; whoever holds it refreshes.
    if not cache.add(LOCK_KEY, "1", timeout=max(int(interval()) + 5, 5)):
        return snap
    try:
        snap = snapshot_take()
        cache.set(SNAPSHOT_KEY, snap.to_json(), timeout=max(int(interval() * 10), 60))
    finally:
        cache.delete(LOCK_KEY)
    return snap


class ClusterCollector(Collector):
    """Renders the cluster snapshot as metrics for one scrape."""

    def collect(self) -> Iterator[Metric]:
        try:
            snap = snapshot_current()
        except Exception as exc:  # the cache is down: the process's own metrics still get served
            logger.warning("cluster metrics unavailable: %s", exc)
            snap = None
        if snap is None:
            return
        yield from render_snapshot(snap, now=time.time())


def render_snapshot(snap: Snapshot, *, now: float) -> Iterable[Metric]:
    age = GaugeMetricFamily("qq_cluster_snapshot_age_seconds", "Age of the cluster measurements shown.")
    age.add_metric([], max(now - snap.taken_at, 0.0))
    took = GaugeMetricFamily("qq_cluster_snapshot_duration_seconds", "How long the last cluster measurement took.")
    took.add_metric([], snap.took_seconds)
    yield from (age, took)

    up = GaugeMetricFamily(
        "qq_database_up", "1 if the database answered its probe (under 1 s), else 0.", labels=["alias"]
    )
    latency = GaugeMetricFamily("qq_database_probe_seconds", "Time of the database probe.", labels=["alias"])
    size = GaugeMetricFamily("qq_database_size_bytes", "Size of the database (pg_database_size).", labels=["alias"])
    for alias, db in sorted(snap.databases.items()):
        up.add_metric([alias], 1.0 if db["up"] else 0.0)
        latency.add_metric([alias], db["seconds"])
        if db.get("size_bytes") is not None:
            size.add_metric([alias], db["size_bytes"])
    yield from (up, latency, size)

    dep_up = GaugeMetricFamily(
        "qq_dependency_up", "1 if the dependency answered its probe (under 1 s), else 0.", labels=["dependency"]
    )
    dep_latency = GaugeMetricFamily(
        "qq_dependency_probe_seconds", "Time of the dependency probe.", labels=["dependency"]
    )
    for name, dep in sorted(snap.dependencies.items()):
        dep_up.add_metric([name], 1.0 if dep["up"] else 0.0)
        dep_latency.add_metric([name], dep["seconds"])
    yield from (dep_up, dep_latency)

    queue = GaugeMetricFamily("qq_queue_messages", "Messages waiting in the broker queue.", labels=["queue"])
    for name, length in sorted(snap.queues.items()):
        if length is not None:
            queue.add_metric([name], float(length))
    yield queue

    by_phase = GaugeMetricFamily("qq_moves", "Moves by phase (every move ever started).", labels=["phase"])
    for phase_name, count in sorted(snap.moves_by_phase.items()):
        by_phase.add_metric([phase_name], float(count))
    yield by_phase

    labels = ["move", "source", "target"]
    phase = GaugeMetricFamily("qq_move_phase", "1 for the phase an active move is in.", labels=[*labels, "phase"])
    phase_age = GaugeMetricFamily(
        "qq_move_phase_seconds", "Time an active move has spent in its phase.", labels=[*labels, "phase"]
    )
    copied = GaugeMetricFamily("qq_move_rows_copied", "Rows copied so far by an active move.", labels=labels)
    total = GaugeMetricFamily("qq_move_rows_total", "Rows an active move has to copy (estimate).", labels=labels)
    lag_bytes = GaugeMetricFamily(
        "qq_move_replication_lag_bytes", "WAL the move's subscriber has yet to confirm.", labels=labels
    )
    lag_seconds = GaugeMetricFamily(
        "qq_move_replication_lag_seconds", "Replay lag of the move's subscriber.", labels=labels
    )
    sub_errors = GaugeMetricFamily(
        "qq_move_subscription_errors", "Apply and sync errors of the move's subscription.", labels=labels
    )
    mismatches = GaugeMetricFamily(
        "qq_move_verify_mismatches", "Mismatches found by the move's last verify run.", labels=labels
    )
    for move in snap.moves:
        values = [str(move.id), move.source, move.target]
        phase.add_metric([*values, move.phase], 1.0)
        phase_age.add_metric([*values, move.phase], move.phase_seconds)
        copied.add_metric(values, float(move.rows_copied))
        total.add_metric(values, float(move.rows_total))
        if move.lag_bytes is not None:
            lag_bytes.add_metric(values, float(move.lag_bytes))
            lag_seconds.add_metric(values, float(move.lag_seconds or 0.0))
        sub_errors.add_metric(values, float(move.subscription_errors))
        mismatches.add_metric(values, float(move.verify_mismatches))
    yield from (phase, phase_age, copied, total, lag_bytes, lag_seconds, sub_errors, mismatches)

    yield _freeze_histogram(snap.freezes)
    errors = GaugeMetricFamily(
        "qq_cluster_snapshot_errors", "Parts of the last cluster measurement that failed (see the web log)."
    )
    errors.add_metric([], float(len(snap.errors)))
    yield errors


def _freeze_histogram(freezes: list[float]) -> HistogramMetricFamily:
    cumulative = []
    for bound in FREEZE_BUCKETS:
        cumulative.append((str(bound), float(sum(1 for f in freezes if f <= bound))))
    cumulative.append(("+Inf", float(len(freezes))))
    histogram = HistogramMetricFamily(
        "qq_move_freeze_seconds", "How long each recorded cut-over froze its range (from the moves' journals)."
    )
    histogram.add_metric([], cumulative, sum_value=float(sum(freezes)))
    return histogram
