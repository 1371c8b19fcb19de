"""OpenTelemetry traces of the Django processes: off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

With it set (``AppConfig.ready``, before the WSGI handler loads its
middleware), requests (Django), SQL (psycopg), Celery publishing and task
runs, and calls to the generation service (gRPC client) become spans of one
trace: the context travels in the task's message headers and in the gRPC
metadata, so a generation created through the API shows the web request, the
worker's job and the service's call under one trace ID. Name each process
with ``OTEL_SERVICE_NAME`` (``quantumquill-web``, ``quantumquill-worker``).
"""

from __future__ import annotations

from contentgen_service.tracing import configure_tracing, flush_traces, tracing_enabled

__all__ = ["configure_django_tracing", "flush_traces", "tracing_enabled"]


def _instrument() -> None:
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.grpc import GrpcInstrumentorClient
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    DjangoInstrumentor().instrument()
    PsycopgInstrumentor().instrument(skip_dep_check=True)
    CeleryInstrumentor().instrument()
    GrpcInstrumentorClient().instrument()


def configure_django_tracing() -> bool:
    """Trace this process if an OTLP endpoint is configured; False (and nothing imported) otherwise."""
    return configure_tracing("quantumquill", _instrument)
