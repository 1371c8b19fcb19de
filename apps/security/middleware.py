"""Refuse NUL bytes anywhere in a request (path, query, headers, form fields) with 400 before any view runs.

PostgreSQL text cannot hold NUL, so such a value reaching a query raises deep in
the database driver (a 500). Nothing legitimate sends NUL in these places;
uploaded files are not inspected.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.shortcuts import render

from apps.platform.api_errors import api_error_response, is_api_request

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def nul_byte_location(request: HttpRequest) -> str | None:
    """Where the request carries a NUL byte ("the path", "header X", ...), or None when it is clean."""
    if "\x00" in request.path:
        return "the path"
    for name, value in request.META.items():
        if (name.startswith("HTTP_") or name in {"CONTENT_TYPE", "QUERY_STRING"}) and "\x00" in str(value):
            return f"header {name.removeprefix('HTTP_').replace('_', '-').title()}"
    if any("\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists()):
        return "the query string"
    if request.method == "POST" and request.content_type in FORM_TYPES:
        if any("\x00" in key or any("\x00" in v for v in values) for key, values in request.POST.lists()):
            return "a form field"
    return None


class NulByteMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            where = nul_byte_location(request)
        except MultiPartParserError as exc:
            return _bad_request(request, code="malformed_form", detail=f"The form body cannot be read: {exc}.")
        if where is None:
            return self.get_response(request)
        detail = f"The request has a NUL byte in {where}; remove it and send the request again."
        return _bad_request(request, code="nul_byte", detail=detail)


def _bad_request(request: HttpRequest, *, code: str, detail: str) -> HttpResponse:
    if is_api_request(request):
        return api_error_response(400, code=code, detail=detail)
    return render(request, "400.html", {"detail": detail}, status=400)
