"""Every Prometheus metric the Django processes (gunicorn workers, Celery workers, commands) record.

Multi-process safe: with ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn and
Celery prefork, see ``exposition.py``) each process writes its samples to
memory-mapped files in that folder and ``/metrics`` sums them, so a scrape that
lands on any one worker reports the whole server. Only counters and
histograms live here (they sum correctly across processes); state that costs a
query (moves, lag, queue depth, shard reachability) is a snapshot taken by one
process per interval (``cluster.py``).

Labels stay bounded: view names (URL pattern names, not paths), status codes,
database aliases, a handful of fixed outcomes. Never a user ID or a path.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from .exposition import DB_QUERY_DURATION, ensure_multiprocess_dir

ensure_multiprocess_dir()

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_QUERY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
_GENERATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# --- HTTP (apps.observability.middleware) ----------------------------------------------------------

http_requests = Counter(
    "qq_http_requests",
    "HTTP requests answered, by view (URL pattern name), method and status.",
    ["view", "method", "status"],
)
http_request_duration = Histogram(
    "qq_http_request_duration_seconds", "Time to answer an HTTP request, by view.", ["view"], buckets=_LATENCY_BUCKETS
)
http_exceptions = Counter(
    "qq_http_exceptions",
    "Requests that raised an exception out of the view, by view and exception class.",
    ["view", "exception"],
)
session_store_errors = Counter(
    "qq_session_store_errors", "Requests answered 503 because the session store did not answer."
)
unavailable_responses = Counter(
    "qq_unavailable_responses", "503 answers given because a dependency is down, by cause.", ["cause"]
)

# --- Databases (quantumquill.db.postgresql: every alias, so every shard) -----------------------------------

db_query_duration = Histogram(
    DB_QUERY_DURATION, "Time of one SQL statement, by database alias.", ["alias"], buckets=_QUERY_BUCKETS
)
# qq_db_queries_total{alias} (SQL statements executed) is this histogram's count, exported under its own name
# at scrape time (exposition.py): one shared-memory write less on every statement.
db_query_errors = Counter(
    "qq_db_query_errors", "SQL statements that raised, by alias and error class.", ["alias", "error"]
)
db_connection_errors = Counter("qq_db_connection_errors", "Failed attempts to connect, by database alias.", ["alias"])
shard_routing_errors = Counter(
    "qq_shard_routing_errors", "Requests stopped by the shard map or a write that could not land, by kind.", ["kind"]
)
shard_write_retries = Counter(
    "qq_shard_write_retries",
    "Writes refused by a frozen or moved range and retried (held during a cut-over), by alias and reason.",
    ["alias", "reason"],
)

# --- Generation pipeline (apps.content) ---------------------------------------------------------------------

GENERATION_EVENTS = ("queued", "started", "succeeded", "failed", "retried")
generation_events = Counter(
    "qq_generation_jobs", "Generation jobs by event: queued, started, succeeded, failed, retried.", ["event"]
)
generation_latency = Histogram(
    "qq_generation_latency_seconds",
    "From a generation's creation to its stored result (end to end, queue time included).",
    buckets=_GENERATION_BUCKETS,
)
generation_time_to_first_token = Histogram(
    "qq_generation_time_to_first_token_seconds",
    "From a generation's creation to its first token, as the user saw it (queue time included).",
    buckets=(*_LATENCY_BUCKETS, 30.0, 60.0),
)
# The recovery sweep (apps.content.sweeper) re-dispatches rows that no live job holds.
generation_sweeper_redispatched = Counter(
    "qq_generation_sweeper_redispatched",
    "Stranded generations (no live claim, no job in flight) found and dispatched again by the recovery sweep.",
)


def prime() -> None:
    """Create the fixed label sets at zero, so rates and alerts see a series before the first event."""
    for event in GENERATION_EVENTS:
        generation_events.labels(event)
