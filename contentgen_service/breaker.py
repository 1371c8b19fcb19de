"""A thread-safe circuit breaker for calls to a remote service."""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable


class BreakerState(enum.StrEnum):
    """Where a circuit breaker stands."""

    CLOSED = "closed"
    """Calls go through; consecutive failures are counted."""
    OPEN = "open"
    """Calls fail fast until the cool-down has passed."""
    HALF_OPEN = "half_open"
    """One trial call goes through; its outcome closes or reopens the circuit."""


class CircuitOpen(Exception):
    """Raised by :meth:`CircuitBreaker.before_call` while calls must fail fast."""

    def __init__(self, retry_after: float, failures: int) -> None:
        super().__init__(f"circuit open after {failures} consecutive failures; next trial in {retry_after:.1f} s")
        self.retry_after = retry_after
        self.failures = failures


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failures; half-opens after ``reset_seconds``.

    Protocol: call :meth:`before_call` (which raises CircuitOpen while calls
    must fail fast), then report the outcome with :meth:`record_success` or
    :meth:`record_failure`. While half-open, a single trial call is let
    through; the others fail fast until its outcome is known.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at = 0.0
        self._state = BreakerState.CLOSED
        self._trial_running = False

    @property
    def state(self) -> BreakerState:
        """The current state (an open circuit whose cool-down passed reports HALF_OPEN)."""
        with self._lock:
            if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.reset_seconds:
                return BreakerState.HALF_OPEN
            return self._state

    def before_call(self) -> None:
        """Let a call through, or raise CircuitOpen."""
        with self._lock:
            if self._state is BreakerState.CLOSED:
                return
            waited = self._clock() - self._opened_at
            if self._state is BreakerState.OPEN and waited >= self.reset_seconds:
                self._state = BreakerState.HALF_OPEN
                self._trial_running = False
            if self._state is BreakerState.HALF_OPEN and not self._trial_running:
                self._trial_running = True
                return
            raise CircuitOpen(max(self.reset_seconds - waited, 0.0), self._failures)

    def record_success(self) -> None:
        """Report that a call reached the service; closes the circuit."""
        with self._lock:
            self._failures = 0
            self._state = BreakerState.CLOSED
            self._trial_running = False

    def record_failure(self) -> None:
        """Report that the service could not be reached; may open the circuit."""
        with self._lock:
            self._failures += 1
            if self._state is BreakerState.HALF_OPEN or self._failures >= self.failure_threshold:
                self._state = BreakerState.OPEN
                self._opened_at = self._clock()
            self._trial_running = False

    def record_abandoned(self) -> None:
        """Report that a call ended without telling either way (the caller gave up on it).

        A half-open circuit then lets the next call be the trial.
        """
        with self._lock:
            self._trial_running = False
