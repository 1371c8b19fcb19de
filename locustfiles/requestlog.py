"""One CSV line per request (``--request-log FILE``): the raw timeline a migration-under-load report needs.

Locust's own statistics are aggregates; to say what happened in the seconds
around a cut-over we need every request with its time. Columns: ``end`` (Unix
time the request finished), ``type``, ``name``, ``response_ms``, ``failed``
(0/1), ``error``.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from locust.env import Environment

COLUMNS = ("end", "type", "name", "response_ms", "failed", "error")


class RequestLog:
    """Appends a row per request event; flushed at least once a second, closed when Locust quits."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(COLUMNS)
        self._flushed = time.monotonic()

    def on_request(
        self,
        request_type: str,
        name: str,
        response_time: float,
        exception: BaseException | None = None,
        **_kwargs: Any,
    ) -> None:
        error = "" if exception is None else str(exception)[:300]
        self._writer.writerow(
            (f"{time.time():.3f}", request_type, name, f"{response_time:.1f}", int(exception is not None), error)
        )
        if time.monotonic() - self._flushed > 1.0:
            self._file.flush()
            self._flushed = time.monotonic()

    def close(self, **_kwargs: Any) -> None:
        self._file.close()


def attach(environment: Environment, path: str) -> RequestLog:
    log = RequestLog(Path(path))
    environment.events.request.add_listener(log.on_request)
    environment.events.quit.add_listener(log.close)
    return log
