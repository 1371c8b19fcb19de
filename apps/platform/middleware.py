"""Middleware for stateless app servers: request IDs, the answering instance, and honest session outages."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from apps.observability import metrics

from .request_id import REQUEST_ID_HEADER, current_request_id, request_id_from_header
from .responses import unavailable_response
from .session_store import SessionStoreUnavailable

logger = logging.getLogger(__name__)

SERVED_BY_HEADER = "X-Served-By"
SESSION_UNAVAILABLE_TEMPLATE = "errors/503_sessions.html"
_STORE_FAILED = "_qq_session_store_failed"


class RequestIdMiddleware:
    """Adopt the load balancer's request ID (or make one), log with it, and return it. Put it first."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = request_id_from_header(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id  # type: ignore[attr-defined]
        token = current_request_id.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            current_request_id.reset(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


class ServedByMiddleware:
    """Name the app server that answered (``QQ_INSTANCE_NAME``, else the host name) in ``X-Served-By``."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response
        self.instance_name = settings.INSTANCE_NAME or socket.gethostname()

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        response[SERVED_BY_HEADER] = self.instance_name
        return response


class SessionMiddleware(DjangoSessionMiddleware):
    """Django's session middleware, answering 503 while the session store is unreachable.

    A request that carries a session cookie has its session read up front: if
    the store does not answer, the request stops here with a 503 and its cookie
    untouched (Django's own middleware would read "no session" and delete the
    cookie, logging the user out for good). A request without a cookie never
    touches the store, so anonymous pages keep working; if it tries to create a
    session (a login), that write fails with the same 503.
    """

    def process_request(self, request: HttpRequest) -> HttpResponse | None:  # type: ignore[override]
        super().process_request(request)
        if request.COOKIES.get(settings.SESSION_COOKIE_NAME):
            try:
                request.session.keys()  # loads the session now, inside this middleware
            except SessionStoreUnavailable as exc:
                return self._unavailable(request, exc)
        return None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, SessionStoreUnavailable):
            return self._unavailable(request, exception)
        return None

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if getattr(request, _STORE_FAILED, False):
            return response  # the session is in an unknown state: neither save it nor touch the cookie
        try:
            return super().process_response(request, response)
        except SessionStoreUnavailable as exc:
            return self._unavailable(request, exc)

    def _unavailable(self, request: HttpRequest, exc: SessionStoreUnavailable) -> HttpResponse:
        setattr(request, _STORE_FAILED, True)
        metrics.session_store_errors.inc()
        metrics.unavailable_responses.labels("session_store").inc()
        logger.warning("Session store unavailable for %s %s: %s", request.method, request.path, exc)
        # Rendered without the request: its lazy user and session must not be touched again.
        return unavailable_response(
            None, template=SESSION_UNAVAILABLE_TEMPLATE, retry_after=getattr(settings, "SESSION_STORE_RETRY_AFTER", 30)
        )
