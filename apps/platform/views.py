from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache


@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness for load balancers and process supervisors: the process answers; touches no database or Redis."""
    return HttpResponse("ok\n", content_type="text/plain")
