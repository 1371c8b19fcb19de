"""The exception that carries a gRPC status out of service code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc


class RpcFailure(Exception):
    """End the current call with ``code`` and a message the caller can act on."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@contextmanager
def aborting_on_failure(context: grpc.ServicerContext) -> Iterator[None]:
    """Turn an RpcFailure raised in the block into the call's status."""
    try:
        yield
    except RpcFailure as failure:
        context.abort(failure.code, failure.message)
