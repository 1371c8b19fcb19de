"""What the request being served has done so far (queries and their time), for its metrics and log line."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any


class RequestStats:
    """The request's statements: counted for its log line, observed by the middleware when the request ends."""

    __slots__ = ("aliases", "observations", "open", "queries", "query_seconds")

    def __init__(self) -> None:
        self.queries = 0
        self.query_seconds = 0.0
        self.aliases: set[str] = set()
        # (the alias's query latency histogram child, seconds) per statement, observed once the request ends.
        self.observations: list[tuple[Any, float]] = []
        # Closed once the middleware has taken the observations: a statement that ends later (a thread that was
        # handed this context and outlives the request) is observed at once instead of being left behind.
        self.open = True

    def add(self, alias: str, seconds: float, histogram: Any) -> None:
        self.queries += 1
        self.query_seconds += seconds
        self.aliases.add(alias)
        if self.open:
            self.observations.append((histogram, seconds))
        else:
            histogram.observe(seconds)

    def close(self) -> list[tuple[Any, float]]:
        """The request's statement observations; any statement that ends from now on is observed by itself."""
        self.open = False
        return self.observations


current_stats: ContextVar[RequestStats | None] = ContextVar("qq_request_stats", default=None)
