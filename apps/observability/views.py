"""``/metrics`` (Prometheus) and ``/readyz`` (may this server take traffic)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST

from . import exposition
from .cluster import ClusterCollector
from .readiness import readiness_get


@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Every process of this server summed, plus the cluster snapshot (taken by one process per interval)."""
    return HttpResponse(exposition.render(ClusterCollector()), content_type=CONTENT_TYPE_LATEST)


@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Per-dependency status and latency; 503 only when the control database or the session store is down."""
    readiness = readiness_get()
    response = JsonResponse(readiness.to_json(), status=readiness.http_status)
    if readiness.http_status == 503:
        response["Retry-After"] = "5"
    return response
