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
import math
import time

# One encoder for every line: ``json.dumps`` with options builds a new encoder per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


def _timestamp(created: float) -> str:
    """``2026-12-05T02:03:52.374+00:00`` (UTC, milliseconds): what ``datetime.isoformat`` writes, for less work."""
    fraction, whole = math.modf(created)
    micros = round(fraction * 1_000_000)  # rounded to the microsecond first, as datetime.fromtimestamp does
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(whole))}.{micros // 1000:03d}+00:00"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": _timestamp(record.created),
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
        return _ENCODER.encode(line)
