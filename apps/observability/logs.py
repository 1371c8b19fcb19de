"""JSON log lines for every Django process (web, Celery worker, commands), carrying the request ID.

One object per line: ``ts``, ``level``, ``logger``, ``message``, ``request_id``
(the web request that caused the work, also inside Celery jobs it queued), ``pid`` (which worker
process) and
any structured fields passed as ``extra={"fields": {...}}``. The generation
service writes the same shape (``contentgen_service.logs``).

Every request writes a line, so the formatting does as little as it can without changing a byte of the
line: the C JSON encoder is made once (``JSONEncoder.encode`` makes a new one for every call), and the
timestamp's date and time are formatted once per second.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]

# What every line is encoded with (default=str: any value a field carries becomes its text).
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)


def _one_shot_encoder() -> Callable[[object], str]:
    """``_ENCODER.encode`` without making its C encoder again for every line.

    The same arguments ``JSONEncoder.iterencode`` passes for ``_ENCODER``, except the circular-reference check
    (its marker dict would be shared by the threads of a worker): a field that contains itself fails with a
    ``RecursionError`` instead of a ``ValueError``, which logging reports the same way.
    """
    if c_make_encoder is None:  # a Python without the C accelerator
        return _ENCODER.encode
    iterencode = c_make_encoder(None, str, encode_basestring, None, ": ", ", ", False, False, True)

    def encode(value: object) -> str:
        return "".join(iterencode(value, 0))

    return encode


def _format_second(whole: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))


def _timestamp(created: float, second: Callable[[float], str] = _format_second) -> str:
    """``2026-12-05T02:03:52.374+00:00`` (UTC, milliseconds): what ``datetime.isoformat`` writes, for less work."""
    fraction, whole = math.modf(created)
    micros = round(fraction * 1_000_000)  # rounded to the microsecond first, as datetime.fromtimestamp does
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    return f"{second(whole)}.{micros // 1000:03d}+00:00"


class _SecondCache:
    """The date and time to the second, formatted once per second: the lines of one second share it."""

    def __init__(self) -> None:
        self._last: tuple[float, str] = (-1.0, "")

    def __call__(self, whole: float) -> str:
        second, text = self._last  # one tuple: another thread replaces it whole or not at all
        if second != whole:
            text = _format_second(whole)
            self._last = (whole, text)
        return text


class JsonFormatter(logging.Formatter):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._second = _SecondCache()
        self._encode = _one_shot_encoder()

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": _timestamp(record.created, self._second),
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
        return self._encode(line)
