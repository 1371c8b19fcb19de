"""A user that drives the content-generation service over gRPC, bypassing Django.

A client interceptor reports every call to Locust's statistics: unary calls as
``grpc: <Method>``; streams as ``grpc: <Method> (first token)`` (call start to
the first message) and ``grpc: <Method> (complete)`` (call start to the end).
Failures carry the gRPC status name, e.g. ``RESOURCE_EXHAUSTED: ...`` when the
service's concurrency limit answers.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import User, between, task
from locust.exception import StopUser

from contentgen_service.gen.contentgen.v1 import contentgen_pb2 as pb
from contentgen_service.gen.contentgen.v1.contentgen_pb2_grpc import ContentGenerationStub

from .journeys import PROMPTS
from .options import LoadOptions

if TYPE_CHECKING:
    from locust.env import Environment

# gRPC's C core must cooperate with gevent's loop, and this must run before any channel exists.
grpc_gevent.init_gevent()

logger = logging.getLogger(__name__)
CALL_TIMEOUT_SECONDS = 30.0


class GrpcFailure(Exception):
    """A call that ended with a non-OK status, named the way the Failures tab groups them."""


def _failure(error: grpc.RpcError) -> GrpcFailure:
    code = error.code() if isinstance(error, grpc.Call) else None
    details = error.details() if isinstance(error, grpc.Call) else str(error)
    return GrpcFailure(f"{code.name if code else 'UNKNOWN'}: {details}")


def _method_name(details: grpc.ClientCallDetails) -> str:
    method = details.method
    text = method.decode() if isinstance(method, bytes) else str(method)
    return text.rsplit("/", 1)[-1]


class _ReportingStream:
    """Wraps a server-streaming call: reports the first message and the end, passes everything through."""

    def __init__(self, call: Any, report: Callable[..., None], method: str, started: float) -> None:
        self._call = call
        self._report = report
        self._method = method
        self._started = started
        self._first = True
        self._length = 0

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            message = next(self._call)
        except StopIteration:
            self._report(f"grpc: {self._method} (complete)", self._started, self._length, None)
            raise
        except grpc.RpcError as error:
            self._report(f"grpc: {self._method} (complete)", self._started, self._length, _failure(error))
            raise
        self._length += message.ByteSize()
        if self._first:
            self._first = False
            self._report(f"grpc: {self._method} (first token)", self._started, 0, None)
        return message

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


class LocustInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Reports each call (and each stream's first message) to ``environment.events.request``."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment

    def _report(self, name: str, started: float, length: int, exception: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=exception,
            context={},
        )

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        started = time.perf_counter()
        call = continuation(client_call_details, request)
        try:
            # Waiting here (a greenlet switch under gevent) is what lets us time the call.
            response = call.result()
        except grpc.RpcError as error:
            self._report(f"grpc: {_method_name(client_call_details)}", started, 0, _failure(error))
        else:
            self._report(f"grpc: {_method_name(client_call_details)}", started, response.ByteSize(), None)
        return call

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        started = time.perf_counter()
        call = continuation(client_call_details, request)
        return _ReportingStream(call, self._report, _method_name(client_call_details), started)


class GrpcUser(User):
    """A backend client of the generation service: unary and streaming generations, as Django's workers do."""

    weight = 1
    wait_time = between(0.5, 2)

    def on_start(self) -> None:
        options = LoadOptions.from_parsed(self.environment.parsed_options)
        if not options.contentgen_target or not options.contentgen_token:
            logger.error(
                "GrpcUser needs the generation service: pass --contentgen-target HOST:PORT and set "
                "$CONTENTGEN_TOKEN (the launcher does both when it starts the platform); this user stops."
            )
            raise StopUser()
        self.max_tokens = options.max_tokens
        self.channel = grpc.intercept_channel(
            grpc.insecure_channel(options.contentgen_target), LocustInterceptor(self.environment)
        )
        self.stub = ContentGenerationStub(self.channel)
        self.metadata = (("authorization", f"Bearer {options.contentgen_token}"),)

    def on_stop(self) -> None:
        channel = getattr(self, "channel", None)
        if channel is not None:
            channel.close()

    def _request(self) -> pb.GenerateRequest:
        return pb.GenerateRequest(
            request_id=f"load-{uuid.uuid4().hex}",
            user_id=random.randint(1, 2000),
            prompt=random.choice(PROMPTS),
            max_tokens=self.max_tokens,
            temperature=0.8,
        )

    @task
    def generate(self) -> None:
        try:
            self.stub.Generate(self._request(), metadata=self.metadata, timeout=CALL_TIMEOUT_SECONDS)
        except grpc.RpcError:
            pass  # already reported by the interceptor

    @task
    def generate_stream(self) -> None:
        try:
            for _message in self.stub.GenerateStream(
                self._request(), metadata=self.metadata, timeout=CALL_TIMEOUT_SECONDS
            ):
                pass
        except grpc.RpcError:
            pass  # already reported by the interceptor
