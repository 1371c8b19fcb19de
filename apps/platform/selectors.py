"""Reads for the platform app: database-backed sessions waiting to be copied to Redis."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from django.contrib.sessions.models import Session

SESSIONS_DATABASE = "default"  # django_session lives in the control database


def db_session_count(*, now: datetime) -> int:
    """How many database sessions are still valid at ``now``."""
    return Session.objects.using(SESSIONS_DATABASE).filter(expire_date__gt=now).count()


def db_session_batches(*, now: datetime, batch_size: int) -> Iterator[list[Session]]:
    """Valid database sessions in key order, ``batch_size`` at a time (keyset pagination: no OFFSET scans)."""
    last_key = ""
    while True:
        batch = list(
            Session.objects.using(SESSIONS_DATABASE)
            .filter(expire_date__gt=now, session_key__gt=last_key)
            .order_by("session_key")[:batch_size]
        )
        if not batch:
            return
        yield batch
        last_key = batch[-1].session_key
