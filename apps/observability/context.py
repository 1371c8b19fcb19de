"""What the request being served has done so far (queries and their time), for its log line."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class RequestStats:
    queries: int = 0
    query_seconds: float = 0.0
    aliases: set[str] = field(default_factory=set)

    def add(self, alias: str, seconds: float) -> None:
        self.queries += 1
        self.query_seconds += seconds
        self.aliases.add(alias)


current_stats: ContextVar[RequestStats | None] = ContextVar("qq_request_stats", default=None)
