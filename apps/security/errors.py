"""JSON error bodies of the API for the refusals this app makes (bad bytes, oversized or over-deep JSON).

Every body has the same shape, documented in the OpenAPI schema as ``Error``:
``{"detail": "<what was wrong and what to do>", "code": "<machine-readable reason>"}``.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

API_PREFIX = "/api/"


def is_api_request(request: HttpRequest) -> bool:
    """Whether ``request`` is for the JSON API, whose errors are JSON rather than HTML pages."""
    return request.path_info.startswith(API_PREFIX)


def api_error(*, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JsonResponse:
    response = JsonResponse({"detail": detail, "code": code}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response
