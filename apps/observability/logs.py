"""JSON log lines for every Django process (web, Celery worker, commands), carrying the request ID.

One object per line: ``ts``, ``level``, ``logger``, ``message``, ``request_id``
(the web request that caused the work, also inside Celery jobs it queued), ``pid`` (which worker
process) and
any structured fields passed as ``extra={"fields": {...}}``. The generation
service writes the same shape (``contentgen_service.logs``).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "pid": record.process,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)
