"""Per-request metrics and the request's JSON log line.

Placed right after the request-ID middleware, so it times (nearly) the whole
request and every 503 given further in (session store, database) is counted
with its status. The view label is the URL pattern's name (bounded), never
the path.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.utils.functional import SimpleLazyObject, empty

from . import exposition, metrics
from .context import RequestStats, current_stats
from .pending import PendingObservations, request_observations

logger = logging.getLogger("qq.request")

UNMATCHED = "<unmatched>"
# Bounded label values: anything else a client sends is "other".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def view_name(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED
    return match.view_name or match._func_path


class RequestMetricsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        # Label children by label values (a bounded set): ``labels()`` takes a lock and builds them every time.
        self._requests: dict[tuple[str, str, str], Any] = {}
        self._durations: dict[str, Any] = {}
        # Multi-process mode: the request's values are added up in memory and written in batches (pending.py).
        self._pending: PendingObservations | None = None
        if exposition.multiprocess_dir() is not None:
            self._pending = request_observations

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        stats = RequestStats()
        token = current_stats.set(stats)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
        except Exception as exc:
            self._record(request, stats, 500, time.perf_counter() - started, exception=type(exc).__name__)
            raise
        finally:
            current_stats.reset(token)
        self._record(request, stats, response.status_code, time.perf_counter() - started)
        return response

    def _record(
        self, request: HttpRequest, stats: RequestStats, status: int, seconds: float, exception: str = ""
    ) -> None:
        view = view_name(request)
        method = request.method if request.method in _METHODS else "other"
        key = (view, method, str(status))
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = metrics.http_requests.labels(*key)
        duration = self._durations.get(view)
        if duration is None:
            duration = self._durations[view] = metrics.http_request_duration.labels(view)
        observations = stats.close()  # the request's statements (quantumquill.db.postgresql)
        observations.append((duration, seconds))
        if self._pending is not None:
            self._pending.add((counter,), observations)
        else:
            counter.inc()
            for histogram, value in observations:
                histogram.observe(value)
        if exception:
            metrics.http_exceptions.labels(view, exception).inc()
        fields: dict[str, object] = {
            "method": request.method,
            "path": request.path,
            "view": view,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "user_id": _user_id(request),
            "shards": sorted(stats.aliases - {"default"}),
            "queries": stats.queries,
            "query_ms": round(stats.query_seconds * 1000, 2),
        }
        if exception:
            fields["exception"] = exception
        if logger.isEnabledFor(logging.INFO):
            # The record built directly: ``logger.info`` would also walk the stack for the caller's file and line,
            # which this line never prints.
            record = logger.makeRecord(
                logger.name, logging.INFO, __file__, 0, "request", (), None, extra={"fields": fields}
            )
            logger.handle(record)


def _user_id(request: HttpRequest) -> int | None:
    """The user, if the request already loaded it: logging must not load a session (or hit a database)."""
    user = request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject):
        user = user._wrapped  # only look, never evaluate
    if user is None or user is empty or not getattr(user, "is_authenticated", False):
        return None
    return int(user.pk)
