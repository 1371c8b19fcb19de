"""The request ID: taken from the load balancer's ``X-Request-ID`` (or made here) and put on every log line.

nginx sets ``X-Request-ID`` (its ``$request_id``, or a valid one the client
sent); this process logs it, returns it, and gunicorn's access log prints it,
so one request can be followed from the load balancer to the app server.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

REQUEST_ID_HEADER = "X-Request-ID"
# What we accept from upstream: enough for UUIDs, nginx's 32 hex digits and trace IDs; nothing that
# could break a log line or a header.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")

current_request_id: ContextVar[str] = ContextVar("qq_request_id", default="-")


def request_id_from_header(value: str | None) -> str:
    """The incoming ID when it is well formed, else a fresh one."""
    if value and _VALID_REQUEST_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every log record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True
