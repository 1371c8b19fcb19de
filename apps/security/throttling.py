"""Login and sign-up throttling: the client's address, django-axes' lockout answer, the sign-up rate.

django-axes counts failed logins (web form, token endpoint, anything calling
``authenticate``) per username and, separately, per address, in the control
database; see docs/security.md for why that fits stateless app servers.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import RedisError

from apps.platform.api_errors import api_error_response, is_api_request

logger = logging.getLogger(__name__)

_PERIODS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}


def client_address(request: HttpRequest) -> str:
    """The client's IP address: the proxy's view of it when the proxy is trusted, else the socket's peer.

    nginx appends the address it saw to X-Forwarded-For, so the last entry is
    the one a client cannot forge; earlier entries are whatever the client sent.
    """
    if settings.QQ_TRUST_PROXY_HEADERS:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return str(request.META.get("REMOTE_ADDR", ""))


def _in_words(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"


def lockout_response(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """429 that says when to try again: JSON under /api/, a page elsewhere, both with Retry-After."""
    cool_off: timedelta = settings.AXES_COOLOFF_TIME
    seconds = int(cool_off.total_seconds())
    retry_at = timezone.now() + cool_off
    detail = (
        f"Too many failed logins for this username or from this address. Try again in {_in_words(seconds)} "
        f"(after {retry_at:%H:%M} UTC); each further attempt before then restarts the wait."
    )
    headers = {"Retry-After": str(seconds)}
    if is_api_request(request):
        return api_error_response(429, code="login_locked_out", detail=detail, headers=headers)
    response = render(request, "accounts/locked_out.html", {"detail": detail}, status=429)
    response["Retry-After"] = str(seconds)
    return response


def parse_rate(rate: str) -> tuple[int, int]:
    """``"20/hour"`` -> (20, 3600)."""
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period.strip().lower()]


def signup_retry_after(request: HttpRequest) -> int | None:
    """Count a sign-up from this address; seconds to wait when over ``QQ_SIGNUP_RATE``, else None.

    A fixed window in the shared cache, so the limit holds across app servers.
    With the cache down the sign-up goes ahead (logged): an outage must not stop new users.
    """
    limit, period = parse_rate(settings.QQ_SIGNUP_RATE)
    now = int(time.time())
    window = now // period
    key = f"signup-rate:{client_address(request)}:{window}"
    try:
        cache.add(key, 0, timeout=period + 5)
        count = cache.incr(key)
    except (RedisError, ConnectionInterrupted, ConnectionError, OSError) as exc:
        logger.warning("Sign-up rate not checked, the cache is unavailable: %s", exc)
        return None
    if count <= limit:
        return None
    return (window + 1) * period - now


@dataclass(frozen=True)
class FailedLogin:
    username: str
    address: str
    failures: int
    last_attempt: datetime
    locked_out: bool


def failed_login_attempts(*, limit: int) -> list[FailedLogin]:
    """Recorded failed logins (django-axes' table in the control database), newest first, for staff."""
    from axes.models import AccessAttempt

    cool_off: timedelta = settings.AXES_COOLOFF_TIME
    now = timezone.now()
    rows = AccessAttempt.objects.order_by("-attempt_time")[:limit]
    return [
        FailedLogin(
            username=row.username or "",
            address=row.ip_address or "",
            failures=row.failures_since_start,
            last_attempt=row.attempt_time,
            locked_out=row.failures_since_start >= settings.AXES_FAILURE_LIMIT and row.attempt_time + cool_off > now,
        )
        for row in rows
    ]
