"""Shared-secret authentication of calls (``authorization: Bearer <token>``)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import grpc

from contentgen_service.access_log import CallRecord
from contentgen_service.errors import RpcFailure, aborting_on_failure
from contentgen_service.metrics import ServiceMetrics

# Probes and tooling must work without the secret: load balancers and
# orchestrators check health, and grpcurl discovers the API by reflection.
# Neither reveals data or runs generations.
OPEN_METHOD_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def token_problem(metadata: tuple[Any, ...] | None, expected_token: str) -> str | None:
    """Return why the call's metadata fails authentication, or None when it passes."""
    values = [value for key, value in (metadata or ()) if key == "authorization"]
    if not values:
        return "missing 'authorization: Bearer <token>' call metadata; send the token configured as CONTENTGEN_TOKEN"
    value = values[0] if isinstance(values[0], str) else values[0].decode("latin-1")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return "the authorization metadata must have the form 'Bearer <token>'"
    if not hmac.compare_digest(token.strip().encode(), expected_token.encode()):
        return "invalid token in the authorization metadata"
    return None


class BearerTokenInterceptor(grpc.ServerInterceptor):
    """Refuses calls without the shared secret with UNAUTHENTICATED.

    Health checking and reflection stay open (see OPEN_METHOD_PREFIXES).
    Refused calls are logged and counted like any other.
    """

    def __init__(self, token: str, metrics: ServiceMetrics) -> None:
        self._token = token
        self._metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        """Pass authenticated calls on; answer the others with UNAUTHENTICATED."""
        handler = continuation(handler_call_details)
        method_path: str = handler_call_details.method
        if handler is None or method_path.startswith(OPEN_METHOD_PREFIXES):
            return handler
        problem = token_problem(handler_call_details.invocation_metadata, self._token)
        if problem is None:
            return handler
        return self._refusing(handler, method_path.rsplit("/", 1)[-1], problem)

    def _refusing(self, handler: grpc.RpcMethodHandler, method: str, problem: str) -> grpc.RpcMethodHandler:
        metrics = self._metrics

        def refuse(request: object, context: grpc.ServicerContext) -> None:
            with (
                aborting_on_failure(context),
                CallRecord(metrics, method, request, context),
            ):
                raise RpcFailure(grpc.StatusCode.UNAUTHENTICATED, problem)

        factory = {
            (False, False): grpc.unary_unary_rpc_method_handler,
            (False, True): grpc.unary_stream_rpc_method_handler,
            (True, False): grpc.stream_unary_rpc_method_handler,
            (True, True): grpc.stream_stream_rpc_method_handler,
        }[(handler.request_streaming, handler.response_streaming)]
        return factory(
            refuse,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
