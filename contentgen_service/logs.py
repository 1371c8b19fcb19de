"""Logging as one JSON object per line, easy for log pipelines to parse."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime


class JsonLineFormatter(logging.Formatter):
    """Formats a record as ``{"ts", "level", "logger", "message", ...fields}``.

    Structured values passed as ``extra={"fields": {...}}`` become top-level keys.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as a single line of JSON."""
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str) -> None:
    """Send every log record to stderr as JSON lines at ``level`` and above."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
