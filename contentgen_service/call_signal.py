"""The stop signal of one server call."""

from __future__ import annotations

import threading

import grpc

from contentgen_service.generation import StopReason

# The server counts a call's deadline from when the request reached it, so the
# client's clock runs out first: the client cancels the call while the server
# still sees up to one request's transit time left. A call that ends this close
# to its deadline ended because of it.
DEADLINE_SLACK_S = 1.0


class GrpcCallSignal:
    """Fires when the client cancels, the call's deadline passes, or the server shuts down.

    gRPC runs the registered callback as soon as the call ends for any reason,
    so a paced generation wakes up immediately instead of sleeping on.
    """

    def __init__(self, context: grpc.ServicerContext, shutdown: threading.Event) -> None:
        self._context = context
        self._shutdown = shutdown
        self._call_ended = threading.Event()
        if not context.add_callback(self._call_ended.set):
            self._call_ended.set()  # the call had already ended

    def reason(self) -> StopReason | None:
        """Return why generation must stop, or None while the caller still waits."""
        if self._shutdown.is_set():
            return "shutdown"
        remaining = self._context.time_remaining()
        if remaining <= 0:
            return "deadline"
        if self._call_ended.is_set() or not self._context.is_active():
            return "deadline" if remaining <= DEADLINE_SLACK_S else "cancelled"
        return None

    def is_set(self) -> bool:
        """Return True once generation must stop."""
        return self.reason() is not None

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (never past the deadline); True if the signal fired."""
        self._call_ended.wait(max(min(seconds, self._context.time_remaining()), 0.0))
        return self.is_set()
