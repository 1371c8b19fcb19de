"""Admission control: the concurrency limit and draining before shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from contentgen_service.errors import RpcFailure


class Admission:
    """Admits at most ``max_concurrency`` generations at once, refusing the rest at once.

    Refusing immediately (rather than queueing) keeps latency predictable and
    lets the client retry on another replica. Thread-safe.
    """

    def __init__(self, max_concurrency: int) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.max_concurrency = max_concurrency
        self._condition = threading.Condition()
        self._in_flight = 0
        self._draining = False

    @property
    def in_flight(self) -> int:
        """Number of generations running now."""
        with self._condition:
            return self._in_flight

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold a slot for the duration of the block.

        Raises RpcFailure(RESOURCE_EXHAUSTED) when all slots are taken and
        RpcFailure(UNAVAILABLE) once the server is draining.
        """
        with self._condition:
            if self._draining:
                raise RpcFailure(
                    grpc.StatusCode.UNAVAILABLE,
                    "server is shutting down; retry the call on another replica",
                )
            if self._in_flight >= self.max_concurrency:
                raise RpcFailure(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"server is at its limit of {self.max_concurrency} concurrent generations; "
                    "retry with backoff or on another replica",
                )
            self._in_flight += 1
        try:
            yield
        finally:
            with self._condition:
                self._in_flight -= 1
                self._condition.notify_all()

    def start_draining(self) -> None:
        """Refuse new generations from now on; running ones continue."""
        with self._condition:
            self._draining = True

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for running generations to finish; True if none remain."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
            return True
