"""Client of the contentgen.v1 service, for Django views and Celery tasks.

Pure gRPC (no Django). Create one :class:`ContentGenClient` per process and
share it between threads: it keeps one channel, load-balances calls over all
addresses of its target with round_robin, retries UNAVAILABLE through the
channel's retry policy, and trips a circuit breaker when the service stays
unreachable. After ``os.fork()`` (Celery prefork, gunicorn) the child process
builds a fresh channel on its first call; gRPC channels must not cross a fork.

Typical use::

    client = ContentGenClient(ClientConfig.from_env())
    params = GenerationParams(request_id=job_id, user_id=user.id, prompt=text, max_tokens=200)
    result = client.generate(params)

    with client.generate_stream(params) as stream:
        for chunk in stream:
            send(chunk.text)
        usage = stream.summary.usage
"""

from __future__ import annotations

import json
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from contentgen_service.breaker import BreakerState, CircuitBreaker, CircuitOpen
from contentgen_service.client_errors import (
    ContentGenCancelled,
    ContentGenCircuitOpen,
    ContentGenDeadlineExceeded,
    ContentGenError,
    ContentGenInvalidArgument,
    ContentGenOverloaded,
    ContentGenUnauthenticated,
    ContentGenUnavailable,
    error_from_rpc,
)
from contentgen_service.envparse import (
    env_setting,
    int_between,
    parse_bool,
    parse_positive_int,
    seconds_between,
)
from contentgen_service.gen.contentgen.v1 import contentgen_pb2 as pb
from contentgen_service.gen.contentgen.v1 import contentgen_pb2_grpc as pb_grpc
from contentgen_service.results import FinishReason, GenerationSummary, TextChunk, Usage
from contentgen_service.wire import finish_reason_from_proto, usage_from_proto

__all__ = [
    "BreakerState",
    "ClientConfig",
    "ContentGenCancelled",
    "ContentGenCircuitOpen",
    "ContentGenClient",
    "ContentGenDeadlineExceeded",
    "ContentGenError",
    "ContentGenInvalidArgument",
    "ContentGenOverloaded",
    "ContentGenUnauthenticated",
    "ContentGenUnavailable",
    "FinishReason",
    "GenerateResult",
    "GenerationParams",
    "GenerationStream",
    "GenerationSummary",
    "TextChunk",
    "Usage",
]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ContentGeneration"].full_name

# Codes that mean "the service could not be reached in time": they count
# towards opening the circuit. Any other answer proves the service is up.
_BREAKER_FAILURES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# gRPC's default reconnect backoff grows to 120 s; a replica that comes back
# after a restart should be used again within seconds.
_MAX_RECONNECT_BACKOFF_MS = 5000


# The accepted ranges of the client's variables (from_env refuses anything outside them).
parse_timeout = seconds_between(0.5, 3600)
parse_max_attempts = int_between(1, 5)  # gRPC caps a retry policy at 5 attempts
parse_breaker_reset = seconds_between(0.1, 3600)


@dataclass(frozen=True)
class ClientConfig:
    """How to reach the service. ``from_env`` reads the CONTENTGEN_* variables.

    The one reader of the client's variables: Django's settings build their client configuration with
    ``from_env`` too (turning ``ConfigError`` into ``ImproperlyConfigured``), so a process without Django and
    the platform agree on every default and limit.
    """

    target: str = "127.0.0.1:50051"
    """A gRPC target: ``host:port``, ``ipv4:10.0.0.1:50051,10.0.0.2:50051`` or ``dns:///contentgen.internal:50051``."""
    token: str | None = None
    """Shared secret sent as ``authorization: Bearer <token>``."""
    timeout_seconds: float = 60.0
    """Deadline of a call when the caller gives none."""
    tls: bool = False
    tls_ca_file: Path | None = None
    """PEM roots to trust instead of the system's (implies TLS)."""
    tls_server_name: str | None = None
    """Name expected in the server certificate, when it differs from the target host."""
    max_attempts: int = 3
    """Attempts per call for UNAVAILABLE (retry policy); 1 disables retries."""
    breaker_failures: int = 5
    """Consecutive UNAVAILABLE/DEADLINE_EXCEEDED outcomes that open the circuit."""
    breaker_reset_seconds: float = 10.0
    """How long an open circuit fails fast before letting a trial call through."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ClientConfig:
        """Read the client settings from the environment.

        Variables: CONTENTGEN_TARGET, CONTENTGEN_TOKEN, CONTENTGEN_TIMEOUT_SECONDS,
        CONTENTGEN_TLS, CONTENTGEN_TLS_CA_FILE, CONTENTGEN_TLS_SERVER_NAME,
        CONTENTGEN_MAX_ATTEMPTS, CONTENTGEN_BREAKER_FAILURES,
        CONTENTGEN_BREAKER_RESET_SECONDS. Raises envparse.ConfigError naming
        a malformed variable and the form it expects.
        """
        defaults = cls()

        def setting(name: str, parse: Callable[[str], Any], default: Any) -> Any:
            return env_setting(environ, name, parse, default)

        ca_file = setting("CONTENTGEN_TLS_CA_FILE", Path, None)
        return cls(
            target=environ.get("CONTENTGEN_TARGET") or defaults.target,
            token=environ.get("CONTENTGEN_TOKEN") or None,
            timeout_seconds=setting("CONTENTGEN_TIMEOUT_SECONDS", parse_timeout, defaults.timeout_seconds),
            tls=setting("CONTENTGEN_TLS", parse_bool, False) or ca_file is not None,
            tls_ca_file=ca_file,
            tls_server_name=environ.get("CONTENTGEN_TLS_SERVER_NAME") or None,
            max_attempts=setting("CONTENTGEN_MAX_ATTEMPTS", parse_max_attempts, defaults.max_attempts),
            breaker_failures=setting("CONTENTGEN_BREAKER_FAILURES", parse_positive_int, defaults.breaker_failures),
            breaker_reset_seconds=setting(
                "CONTENTGEN_BREAKER_RESET_SECONDS", parse_breaker_reset, defaults.breaker_reset_seconds
            ),
        )


def service_config(max_attempts: int) -> dict[str, Any]:
    """Return the gRPC service config: round_robin balancing and retries of UNAVAILABLE.

    Retrying is safe because a request's ``request_id`` also fixes its seed:
    a retried generation produces the same text. Retry throttling stops
    retries from piling onto a failing service.
    """
    config: dict[str, Any] = {
        "loadBalancingConfig": [{"round_robin": {}}],
        # Client-side health checking: round_robin skips a replica whose
        # health says NOT_SERVING (e.g. draining before shutdown).
        "healthCheckConfig": {"serviceName": SERVICE_NAME},
    }
    if max_attempts > 1:
        config["methodConfig"] = [
            {
                "name": [{"service": SERVICE_NAME}],
                "retryPolicy": {
                    "maxAttempts": min(max_attempts, 5),  # gRPC caps attempts at 5
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
        config["retryThrottling"] = {"maxTokens": 10, "tokenRatio": 0.1}
    return config


@dataclass(frozen=True)
class GenerateResult:
    """A finished generation."""

    request_id: str
    text: str
    finish_reason: FinishReason
    usage: Usage
    model: str


@dataclass(frozen=True)
class GenerationParams:
    """What to generate. Unset optional settings use the server's defaults.

    ``request_id`` is the idempotency key: build the params once per job and
    reuse them when retrying, so the retry produces the same text.
    """

    request_id: str
    user_id: int
    prompt: str
    max_tokens: int = 256
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    """Unset: derived from ``request_id`` by the server."""
    stop: tuple[str, ...] = ()

    def to_proto(self) -> pb.GenerateRequest:
        """Return the protobuf request."""
        request = pb.GenerateRequest(
            request_id=self.request_id,
            user_id=self.user_id,
            prompt=self.prompt,
            max_tokens=self.max_tokens,
            stop=list(self.stop),
        )
        if self.temperature is not None:
            request.temperature = self.temperature
        if self.top_p is not None:
            request.top_p = self.top_p
        if self.seed is not None:
            request.seed = self.seed
        return request


def _summary_from_proto(message: pb.GenerationSummary) -> GenerationSummary:
    return GenerationSummary(
        finish_reason=finish_reason_from_proto(message.finish_reason),
        usage=usage_from_proto(message.usage),
        model=message.model,
    )


class _Connection:
    """The channel, stub and breaker of one process."""

    def __init__(self, config: ClientConfig) -> None:
        self.pid = os.getpid()
        self.channel = _open_channel(config)
        self.stub = pb_grpc.ContentGenerationStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_reset_seconds)


def _open_channel(config: ClientConfig) -> grpc.Channel:
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", json.dumps(service_config(config.max_attempts))),
        ("grpc.enable_retries", 1 if config.max_attempts > 1 else 0),
        ("grpc.max_reconnect_backoff_ms", _MAX_RECONNECT_BACKOFF_MS),
    ]
    if not (config.tls or config.tls_ca_file):
        return grpc.insecure_channel(config.target, options=options)
    roots = config.tls_ca_file.read_bytes() if config.tls_ca_file else None
    if config.tls_server_name:
        options.append(("grpc.ssl_target_name_override", config.tls_server_name))
    return grpc.secure_channel(
        config.target,
        grpc.ssl_channel_credentials(root_certificates=roots),
        options=options,
    )


class ContentGenClient:
    """Thread-safe, fork-aware client of contentgen.v1.

    Methods raise subclasses of :class:`ContentGenError`; check ``.retryable``
    to decide between retrying later and failing the job.
    """

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._metadata = (("authorization", f"Bearer {config.token}"),) if config.token else ()
        self._lock = threading.Lock()
        self._connection: _Connection | None = None
        # A fork can happen while another thread holds the lock; the child
        # would then wait on it forever. Give the child a fresh lock instead.
        reference = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_after_fork(reference))

    def _current(self) -> _Connection:
        connection = self._connection
        if connection is not None and connection.pid == os.getpid():
            return connection
        with self._lock:
            if self._connection is None or self._connection.pid != os.getpid():
                # The parent's channel is left alone (not closed): its threads
                # and sockets belong to the parent process.
                self._connection = _Connection(self.config)
            return self._connection

    @property
    def breaker_state(self) -> BreakerState:
        """State of this process's circuit breaker."""
        return self._current().breaker.state

    def _begin(self) -> _Connection:
        connection = self._current()
        try:
            connection.breaker.before_call()
        except CircuitOpen as open_circuit:
            raise ContentGenCircuitOpen(
                f"content generation service unreachable at {self.config.target}: {open_circuit}",
                retry_after=open_circuit.retry_after,
            ) from None
        return connection

    def generate(
        self, params: GenerationParams, *, timeout: float | None = None, metadata: Sequence[tuple[str, str]] = ()
    ) -> GenerateResult:
        """Generate text and return it when complete.

        ``timeout`` (seconds) defaults to ``config.timeout_seconds``; ``metadata`` is sent with the call
        (``x-request-id``: the caller's request ID, which the service's log line carries).
        """
        request = params.to_proto()  # before taking a breaker slot: this may raise on bad types
        connection = self._begin()
        try:
            response = connection.stub.Generate(
                request, timeout=timeout or self.config.timeout_seconds, metadata=(*self._metadata, *metadata)
            )
        except grpc.RpcError as error:
            raise _failed(connection.breaker, error) from None
        connection.breaker.record_success()
        return GenerateResult(
            request_id=response.request_id,
            text=response.text,
            finish_reason=finish_reason_from_proto(response.finish_reason),
            usage=usage_from_proto(response.usage),
            model=response.model,
        )

    def generate_stream(
        self, params: GenerationParams, *, timeout: float | None = None, metadata: Sequence[tuple[str, str]] = ()
    ) -> GenerationStream:
        """Start a streaming generation; iterate the result for text chunks.

        Closing the stream (``close()``, leaving its ``with`` block, or
        abandoning it) cancels the call, and the server stops generating.
        """
        request = params.to_proto()
        connection = self._begin()
        call = connection.stub.GenerateStream(
            request, timeout=timeout or self.config.timeout_seconds, metadata=(*self._metadata, *metadata)
        )
        return GenerationStream(call, connection.breaker, params.request_id)

    def health(self, timeout: float = 2.0) -> str:
        """Return the service's health status name (``SERVING``, ``NOT_SERVING``, ...).

        Raises ContentGenError subclasses when the service cannot be reached.
        Health checks bypass the circuit breaker and need no token.
        """
        try:
            response = self._current().health.Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=timeout
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from None
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def close(self) -> None:
        """Close this process's channel; the next call opens a new one."""
        with self._lock:
            connection, self._connection = self._connection, None
        if connection is not None and connection.pid == os.getpid():
            connection.channel.close()


def _reset_after_fork(reference: weakref.ref[ContentGenClient]) -> None:
    client = reference()
    if client is not None:
        client._lock = threading.Lock()


def _failed(breaker: CircuitBreaker, error: grpc.RpcError) -> ContentGenError:
    code = error.code()
    if code in _BREAKER_FAILURES:
        breaker.record_failure()
    elif code is not grpc.StatusCode.CANCELLED:
        breaker.record_success()
    return error_from_rpc(error)


class GenerationStream:
    """Iterator of the :class:`TextChunk` of a streaming generation.

    After the last chunk, :attr:`summary` holds the finish reason and usage.
    Use it as a context manager, or call :meth:`close`, to cancel early.
    """

    def __init__(self, call: Any, breaker: CircuitBreaker, request_id: str) -> None:
        self._call = call
        self._breaker = breaker
        self.request_id = request_id
        self.summary: GenerationSummary | None = None
        self._text: list[str] = []
        self._closed = False  # set once the call has ended, one way or another

    def __iter__(self) -> Iterator[TextChunk]:
        return self

    def __next__(self) -> TextChunk:
        if self._closed or self.summary is not None:
            raise StopIteration
        try:
            message = next(self._call)
        except StopIteration:
            self._closed = True
            raise ContentGenError(
                f"stream {self.request_id} ended without a summary",
                code=grpc.StatusCode.INTERNAL,
            ) from None
        except grpc.RpcError as error:
            self._closed = True
            raise _failed(self._breaker, error) from None
        if message.HasField("summary"):
            self.summary = _summary_from_proto(message.summary)
            self._breaker.record_success()
            raise StopIteration
        chunk = TextChunk(
            text=message.chunk.text,
            tokens=message.chunk.tokens,
            completion_tokens=message.chunk.completion_tokens,
        )
        self._text.append(chunk.text)
        return chunk

    def result(self) -> GenerateResult:
        """Read the rest of the stream and return the whole generation."""
        for _ in self:
            pass
        if self.summary is None:
            raise ContentGenError(f"stream {self.request_id} was closed before it finished")
        return GenerateResult(
            request_id=self.request_id,
            text="".join(self._text),
            finish_reason=self.summary.finish_reason,
            usage=self.summary.usage,
            model=self.summary.model,
        )

    def close(self) -> None:
        """Cancel the call if it is still running (the server stops generating)."""
        if not self._closed and self.summary is None:
            self._call.cancel()
            self._breaker.record_abandoned()
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # An abandoned stream is cancelled by gRPC itself when collected; the
        # breaker must not keep waiting for its outcome.
        if not getattr(self, "_closed", True) and self.summary is None:
            self._breaker.record_abandoned()
