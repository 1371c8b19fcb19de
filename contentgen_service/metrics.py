"""Prometheus metrics of the service, on a registry of its own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

METHODS = ("Generate", "GenerateStream")
_LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
_TTFT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class ServiceMetrics:
    """The service's counters, histograms and gauges.

    Exposed names (Prometheus adds ``_total`` to counters):

    - ``contentgen_requests_total{method}``: calls received
    - ``contentgen_errors_total{method,code}``: calls that ended with a non-OK status
    - ``contentgen_request_duration_seconds{method}``: call latency
    - ``contentgen_time_to_first_token_seconds``: from call start to first token
    - ``contentgen_tokens_generated_total``: tokens produced (``rate()`` gives tokens/s)
    - ``contentgen_prompt_tokens_total``: prompt tokens read
    - ``contentgen_generations_interrupted_total{reason}``: generations stopped
      early because the client cancelled, its deadline passed, or the server shut down
    - ``contentgen_generations_in_flight``: generations running now
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter("contentgen_requests", "Calls received.", ["method"], registry=r)
        self.errors = Counter(
            "contentgen_errors",
            "Calls that ended with a non-OK status.",
            ["method", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "contentgen_request_duration_seconds",
            "Call latency.",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "contentgen_time_to_first_token_seconds",
            "Time from the start of a call to its first generated token.",
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("contentgen_tokens_generated", "Tokens generated.", registry=r)
        self.prompt_tokens = Counter("contentgen_prompt_tokens", "Prompt tokens read.", registry=r)
        self.interrupted = Counter(
            "contentgen_generations_interrupted",
            "Generations stopped early: cancelled by the client, deadline passed, or server shutdown.",
            ["reason"],
            registry=r,
        )
        self.in_flight = Gauge("contentgen_generations_in_flight", "Generations running now.", registry=r)
        self.backend = Gauge(
            "contentgen_backend_info",
            "The generator backend in use.",
            ["backend", "model"],
            registry=r,
        )
        for method in METHODS:
            self.requests.labels(method)
            self.latency.labels(method)
        for reason in ("cancelled", "deadline", "shutdown"):
            self.interrupted.labels(reason)

    def track_in_flight(self, count: Callable[[], int]) -> None:
        """Read the in-flight gauge from ``count`` at every scrape."""
        self.in_flight.set_function(count)

    def record_call(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        """Count one finished call."""
        self.requests.labels(method).inc()
        self.latency.labels(method).observe(seconds)
        if code is not grpc.StatusCode.OK:
            self.errors.labels(method, code.name).inc()


def serve_metrics(metrics: ServiceMetrics, host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` over HTTP in a background thread; returns the server and thread."""
    return start_http_server(port, addr=host, registry=metrics.registry)
