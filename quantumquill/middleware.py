"""Turn an unreachable database (or session store) into a clear 503 page instead of a 500."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse

from apps.observability import metrics
from apps.platform.responses import RETRY_AFTER_SECONDS, unavailable_response
from shardrouter.errors import ShardMapError, ShardWriteUnavailable

logger = logging.getLogger(__name__)

# PgBouncer gave up waiting for a free server connection (its query_wait_timeout): the pool is busy, not
# down, so clients may come back sooner (docs/connections.md).
POOL_EXHAUSTED_MARKER = "query_wait_timeout"
POOL_RETRY_AFTER_SECONDS = 5


class DatabaseUnavailableMiddleware:
    """Answer 503 with Retry-After when the database holding the user's data does not answer.

    Only requests that touch the failed database are affected: with a shard
    server down, users on other shards keep working.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, (OperationalError, InterfaceError, ShardMapError, ShardWriteUnavailable)):
            return None
        logger.warning("Database unavailable for %s %s: %s", request.method, request.path, exception)
        if isinstance(exception, (ShardMapError, ShardWriteUnavailable)):
            metrics.shard_routing_errors.labels(type(exception).__name__).inc()
        metrics.unavailable_responses.labels("database").inc()
        retry_after = POOL_RETRY_AFTER_SECONDS if POOL_EXHAUSTED_MARKER in str(exception) else RETRY_AFTER_SECONDS
        return unavailable_response(request, template="errors/503_database.html", retry_after=retry_after)
