from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.views import defaults

from apps.platform.api_errors import api_error_response, is_api_request

from .throttling import failed_login_attempts


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A failed CSRF check, in the site's layout (or JSON under /api/), with what to do about it."""
    detail = "This form has expired or was sent from another site. Reload the page and submit it again."
    if is_api_request(request):
        return api_error_response(403, code="csrf_failed", detail=detail + " API clients: send a token instead.")
    return render(request, "403_csrf.html", {"detail": detail}, status=403)


def favicon(request: HttpRequest) -> HttpResponse:
    """``/favicon.ico``, which browsers ask for on their own: the static file, wherever static files live."""
    return redirect(static("favicon.ico"))


@staff_member_required(login_url="accounts:login")
def failed_logins(request: HttpRequest) -> HttpResponse:
    """Staff: the usernames and addresses with failed logins, newest first, and which are locked out now."""
    return render(request, "security/failed_logins.html", {"attempts": failed_login_attempts(limit=200)})


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404: JSON under /api/ (clients parse it), the site's page elsewhere."""
    if is_api_request(request):
        return api_error_response(
            404, code="not_found", detail="No such API path or object; the paths are listed at /api/v1/docs/."
        )
    return defaults.page_not_found(request, exception or Http404())
