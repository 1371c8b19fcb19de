"""OpenTelemetry traces of the service: off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

With the endpoint set, every call becomes a server span joined to the
caller's trace (W3C ``traceparent`` in the gRPC metadata) and exported over
OTLP/HTTP; the standard ``OTEL_*`` variables (service name, sampler, batch
delays) apply. The OpenTelemetry packages are imported only then.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"


def tracing_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    return bool(environ.get(ENDPOINT_ENV, "").strip())


def configure_tracing(default_service_name: str, *instrument: Callable[[], None]) -> bool:
    """Install an OTLP/HTTP-exporting tracer provider and run the ``instrument`` callables; False when off."""
    if not tracing_enabled():
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or default_service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    # The batch processor restarts its export thread after a fork (gunicorn and Celery prefork children).
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    for step in instrument:
        step()
    return True


def instrument_grpc_server() -> None:
    from opentelemetry.instrumentation.grpc import GrpcInstrumentorServer

    GrpcInstrumentorServer().instrument()


def flush_traces() -> None:
    """Export what is still buffered (at shutdown)."""
    if not tracing_enabled():
        return
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if shutdown is not None:
        shutdown()
