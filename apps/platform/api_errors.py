"""Every error under ``/api/v1/`` is JSON, never the HTML page meant for browsers.

DRF renders the errors its views raise (400, 401, 403, 404, 405, 429) as JSON
itself. Everything else answers from outside the API's views: the URL
resolver's 404 (a malformed ID never matches the route), the 503 pages of the
database and session middleware, Django's 500 and 400 pages, and bodies
larger than ``DATA_UPLOAD_MAX_MEMORY_SIZE``. ``ApiJsonErrorsMiddleware``
turns those into ``{"detail": ..., "code": ...}`` with the same status and
headers (``Retry-After`` stays), and refuses an oversized body with 413 before
anything reads it. ``api_error_response`` is the one builder of those bodies:
other request checks (parsing errors, ...) answer through it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

# Every version of the API, and unknown paths under it, answer JSON.
API_PREFIX = "/api/"

# What each status means for an API client, when the page behind it said it in HTML.
_DETAILS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "The request could not be read."),
    404: ("not_found", "No such resource. IDs are decimal strings of the 64-bit ID."),
    413: ("payload_too_large", "The request body is too large."),
    500: ("server_error", "The server failed to answer; the error was logged."),
    502: ("bad_gateway", "An upstream server failed to answer."),
    503: ("service_unavailable", "A service this request needs is down; try again after Retry-After seconds."),
}
# Response headers worth keeping when an HTML error becomes JSON.
_KEPT_HEADERS = ("Retry-After", "WWW-Authenticate", "Allow", "X-Request-ID", "X-Served-By")


def is_api_request(request: HttpRequest) -> bool:
    """Whether ``request`` is for the JSON API, whose errors are JSON rather than HTML pages."""
    return request.path_info.startswith(API_PREFIX)


def api_error_response(
    status: int,
    detail: str,
    *,
    code: str | None = None,
    retry_after: int | None = None,
    headers: dict[str, str] | None = None,
) -> JsonResponse:
    """The JSON error body of the API (``Error`` in the OpenAPI schema): ``{"detail": "...", "code": "..."}``."""
    response = JsonResponse({"detail": detail, "code": code or _DETAILS.get(status, ("error", ""))[0]}, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _too_large(limit: int | None) -> JsonResponse:
    limit_text = f"{limit} bytes" if limit else "the server's limit"
    return api_error_response(
        413,
        f"The request body is larger than {limit_text} (DATA_UPLOAD_MAX_MEMORY_SIZE); send a smaller one.",
    )


def _is_json(response: HttpResponse) -> bool:
    return response.get("Content-Type", "").split(";")[0].strip() in {"application/json", "application/problem+json"}


class ApiJsonErrorsMiddleware:
    """Answers API errors in JSON; other paths pass untouched. Place it near the top of MIDDLEWARE."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not is_api_request(request):
            return self.get_response(request)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            return _too_large(limit)
        response = self.get_response(request)
        if response.status_code < 400 or _is_json(response) or getattr(response, "streaming", False):
            return response
        code, detail = _DETAILS.get(response.status_code, ("error", "The request failed."))
        converted = api_error_response(response.status_code, detail, code=code)
        for header in _KEPT_HEADERS:
            if header in response:
                converted[header] = response[header]
        return converted

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if is_api_request(request) and isinstance(exception, RequestDataTooBig):
            return _too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        return None
