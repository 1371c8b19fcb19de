"""Responses the platform's parts share: a dependency that is down is a clear 503 with Retry-After."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

RETRY_AFTER_SECONDS = 30


def unavailable_response(
    request: HttpRequest | None, *, template: str, retry_after: int = RETRY_AFTER_SECONDS
) -> HttpResponse:
    """A 503 page with Retry-After; ``request`` may be None when its lazy parts must not be touched."""
    body = render_to_string(template, {"retry_after": retry_after}, request=request)
    response = HttpResponse(body, status=503)
    response["Retry-After"] = str(retry_after)
    return response
