"""Assembling, running and gracefully stopping the gRPC server."""

from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from types import FrameType

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from contentgen_service.admission import Admission
from contentgen_service.auth import BearerTokenInterceptor
from contentgen_service.backends import TextGenerator, build_generator
from contentgen_service.config import ConfigError, ServerConfig
from contentgen_service.decoding import add_servicer
from contentgen_service.metrics import ServiceMetrics, serve_metrics
from contentgen_service.service import GenerationService
from contentgen_service.servicer import SERVICE_NAME, ContentGenerationServicer
from contentgen_service.tracing import configure_tracing, flush_traces, instrument_grpc_server

logger = logging.getLogger("contentgen.server")

# Threads beyond the generation limit, so that health checks, reflection and
# the immediate refusals of excess calls always find a free thread.
_SPARE_THREADS = 16
# Of the grace period, the part kept for ending the streams still running
# when it is nearly over (they end with UNAVAILABLE, so that clients retry them).
_FINAL_SECONDS = 1.0


@dataclass
class RunningServer:
    """A started server and what is needed to drain it."""

    server: grpc.Server
    health: health.HealthServicer
    admission: Admission
    shutdown: threading.Event
    port: int

    def drain_and_stop(self, grace_seconds: float) -> None:
        """Stop gracefully within ``grace_seconds``.

        1. Health turns NOT_SERVING (load balancers stop sending calls) and new
           generations are refused with UNAVAILABLE (clients retry elsewhere).
        2. Running generations get the grace period to finish; streams still
           running near its end are ended with UNAVAILABLE ("drained"), which
           clients retry: a cut-short text is never handed over as a result.
        3. The gRPC server stops, cutting whatever remains at the deadline.
        """
        deadline = time.monotonic() + grace_seconds
        self.health.enter_graceful_shutdown()
        self.admission.start_draining()
        logger.info(
            "draining: health is NOT_SERVING, %d generations running, grace %.1f s",
            self.admission.in_flight,
            grace_seconds,
        )
        finished = self.admission.wait_idle(max(grace_seconds - _FINAL_SECONDS, 0.0))
        if not finished:
            logger.warning(
                "grace period nearly over: ending %d running generations",
                self.admission.in_flight,
            )
            self.shutdown.set()
            self.admission.wait_idle(max(deadline - time.monotonic(), 0.0))
        self.server.stop(grace=max(deadline - time.monotonic(), 0.0)).wait()
        logger.info("stopped")


def _listen(server: grpc.Server, config: ServerConfig) -> int:
    if config.tls_cert is None or config.tls_key is None:
        return server.add_insecure_port(config.bind)
    try:
        credentials = grpc.ssl_server_credentials([(config.tls_key.read_bytes(), config.tls_cert.read_bytes())])
    except OSError as exc:
        raise ConfigError(f"cannot read the TLS certificate or key ({exc.filename}): {exc.strerror}") from None
    return server.add_secure_port(config.bind, credentials)


def start_server(config: ServerConfig, generator: TextGenerator, metrics: ServiceMetrics) -> RunningServer:
    """Build and start the gRPC server: service, health, reflection, auth, limits."""
    admission = Admission(config.max_concurrency)
    metrics.track_in_flight(lambda: admission.in_flight)
    shutdown = threading.Event()
    service = GenerationService(
        generator=generator,
        admission=admission,
        metrics=metrics,
        limits=config.limits,
        shutdown=shutdown,
        token_interval=config.token_interval_ms / 1000.0,
    )
    workers = config.max_concurrency + _SPARE_THREADS
    interceptors = [BearerTokenInterceptor(config.token, metrics)] if config.token else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="contentgen-rpc"),
        interceptors=interceptors,
        # Beyond this gRPC itself answers RESOURCE_EXHAUSTED instead of queueing.
        maximum_concurrent_rpcs=workers,
        # Without this, a second server on the same port would start silently.
        options=[("grpc.so_reuseport", 0)],
    )
    add_servicer(ContentGenerationServicer(service, metrics), server)
    health_servicer = health.HealthServicer(
        experimental_non_blocking=True,
        experimental_thread_pool=futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="contentgen-health"),
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        port = _listen(server, config)
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {config.bind} ({exc}); is another process using it?") from None
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(
        server=server,
        health=health_servicer,
        admission=admission,
        shutdown=shutdown,
        port=port,
    )


def serve(config: ServerConfig) -> int:
    """Run the service until SIGTERM or SIGINT, then drain; return the exit status.

    A second signal during draining ends running generations at once.
    """
    started = time.monotonic()
    configure_tracing("contentgen", instrument_grpc_server)
    generator = build_generator(
        config.backend,
        cache_dir=config.cache_dir,
        ngram_order=config.ngram_order,
        openai=config.openai,
    )
    metrics = ServiceMetrics()
    metrics.backend.labels(config.backend, generator.model_name).set(1)
    metrics_server = None
    if config.metrics_port is not None:
        try:
            metrics_server, _ = serve_metrics(metrics, config.metrics_host, config.metrics_port)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {config.metrics_host}:{config.metrics_port}: {exc.strerror}"
            ) from None
    running = start_server(config, generator, metrics)
    host = config.bind.rpartition(":")[0]
    logger.info(
        "serving contentgen.v1 on %s:%d (%s, model %s, auth %s, max %d concurrent, metrics %s) after %.1f s",
        host,
        running.port,
        "TLS" if config.tls_cert else "plaintext",
        generator.model_name,
        "bearer token" if config.token else "DISABLED",
        config.max_concurrency,
        f"on {config.metrics_host}:{metrics_server.server_port}" if metrics_server else "off",
        time.monotonic() - started,
    )
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop_requested.is_set():
            running.shutdown.set()
        stop_requested.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop_requested.wait(timeout=1.0):
        pass
    running.drain_and_stop(config.grace_seconds)
    if metrics_server is not None:
        # Its thread is a daemon; closing the socket is enough at exit (a
        # shutdown() would wait for the next 0.5 s poll).
        metrics_server.server_close()
    flush_traces()
    return 0
