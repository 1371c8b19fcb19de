"""``/readyz``: may this app server take traffic? Every dependency probed, each under a second.

Only what every request needs makes a server unready (503): the control
database (users, the shard map) and the session store. A shard, the cache,
the broker or the generation service being down is reported as ``degraded``
with 200: the balancer keeps the server, and the requests that need the
missing piece get their own 503. Taking every server out of the balancer
because one shard is down would turn a partial outage into a total one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from .probes import (
    Probe,
    ProbeResult,
    broker_probe,
    contentgen_probe,
    database_probe,
    redis_probe,
    run_probes,
    shard_aliases,
)

CONTROL = "database:default"
SESSIONS = "session_store"


@dataclass(frozen=True)
class Readiness:
    status: str  # ok | degraded | unready
    results: dict[str, ProbeResult]

    @property
    def http_status(self) -> int:
        return 503 if self.status == "unready" else 200

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "critical": [CONTROL, SESSIONS],
            "checks": {name: result.to_json() for name, result in self.results.items()},
        }


def readiness_probes() -> dict[str, Probe]:
    probes: dict[str, Probe] = {CONTROL: database_probe("default")}
    for alias in shard_aliases():
        probes[f"database:{alias}"] = database_probe(alias)
    if settings.QQ_SESSION_STORE == "redis":
        probes[SESSIONS] = redis_probe(settings.SESSION_CACHE_ALIAS)
    else:  # sessions in the control database (changeover period)
        probes[SESSIONS] = database_probe("default")
    probes["cache"] = redis_probe("default")
    probes["broker"] = broker_probe()
    probes["contentgen"] = contentgen_probe()
    return probes


def readiness_get() -> Readiness:
    """Probe every dependency once and judge: unready only when the control DB or session store is down."""
    results = run_probes(readiness_probes())
    if not results[CONTROL].ok or not results[SESSIONS].ok:
        status = "unready"
    elif all(result.ok for result in results.values()):
        status = "ok"
    else:
        status = "degraded"
    return Readiness(status, results)
