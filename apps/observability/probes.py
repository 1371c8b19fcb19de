"""Probes of every dependency, each bounded in time, run side by side.

A probe never takes longer than its deadline (under a second): each runs in
its own thread and one that has not answered by then is reported as a
timeout, whatever the driver's own timeouts are (libpq's connect timeout
cannot go below two seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import psycopg
from celery import current_app as celery_app  # the project's app (quantumquill.celery)
from django.conf import settings
from django.db import connections
from django_redis import get_redis_connection

from apps.content.generator import contentgen_client

DEFAULT_DEADLINE = 0.8


@dataclass(frozen=True)
class ProbeResult:
    name: str
    ok: bool
    seconds: float
    error: str = ""
    value: float | None = None  # a measurement some probes take on the way (a database's size)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": "ok" if self.ok else "down", "latency_ms": round(self.seconds * 1000, 1)}
        if self.error:
            data["error"] = self.error
        return data


Probe = Callable[[float], float | None]
# Threads outlive a probe that timed out (a driver call cannot be interrupted); a shared pool bounds them.
_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="qq-probe")


def run_probes(probes: dict[str, Probe], *, deadline: float = DEFAULT_DEADLINE) -> dict[str, ProbeResult]:
    """Run every probe at once and wait at most ``deadline`` seconds for all of them together."""
    started = time.monotonic()
    futures = {name: _pool.submit(_timed, name, probe, deadline) for name, probe in probes.items()}
    results: dict[str, ProbeResult] = {}
    for name, future in futures.items():
        remaining = max(deadline - (time.monotonic() - started), 0.0)
        try:
            results[name] = future.result(timeout=remaining)
        except FutureTimeout:
            results[name] = ProbeResult(name, False, time.monotonic() - started, f"no answer within {deadline:g} s")
    return results


def _timed(name: str, probe: Probe, deadline: float) -> ProbeResult:
    started = time.monotonic()
    try:
        value = probe(deadline)
    except Exception as exc:
        return ProbeResult(name, False, time.monotonic() - started, f"{type(exc).__name__}: {exc}".strip()[:300])
    return ProbeResult(name, True, time.monotonic() - started, value=value)


def database_probe(alias: str, *, measure_size: bool = False) -> Probe:
    """Connect to ``alias`` on a fresh connection (not the request's) and run one statement."""

    def probe(deadline: float) -> float | None:
        params = connections[alias].get_connection_params()
        params.pop("cursor_factory", None)
        params.pop("context", None)
        params["connect_timeout"] = max(2, int(deadline + 0.999))
        params["options"] = f"-c statement_timeout={int(deadline * 1000)}"
        with psycopg.connect(**params, autocommit=True) as conn:
            sql = "SELECT pg_database_size(current_database())" if measure_size else "SELECT 1"
            row = conn.execute(sql).fetchone()
        return float(row[0]) if measure_size and row else None

    return probe


def redis_probe(alias: str) -> Probe:
    """PING the Redis behind Django cache ``alias``."""

    def probe(deadline: float) -> None:
        client = get_redis_connection(alias)
        client.ping()

    return probe


def broker_probe() -> Probe:
    def probe(deadline: float) -> None:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=0, timeout=deadline)

    return probe


def contentgen_probe() -> Probe:
    def probe(deadline: float) -> None:
        status = contentgen_client().health(timeout=deadline)
        if status != "SERVING":
            raise RuntimeError(f"health is {status}")

    return probe


def shard_aliases() -> list[str]:
    return [alias for alias in settings.DATABASES if alias != "default"]
