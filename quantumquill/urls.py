from __future__ import annotations

from django.urls import include, path
from django.views.generic import TemplateView

from apps.observability.views import metrics_view, readyz
from apps.platform.views import healthz
from apps.security.views import favicon

urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    path("accounts/", include("apps.accounts.urls")),
    path("generations/", include("apps.content.urls")),
    path("healthz", healthz, name="healthz"),  # apps.platform: liveness for nginx/supervisors
    # Observability (docs/observability.md): readiness with every dependency, Prometheus metrics.
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    # Files: exports of generations, and local media behind signed links (QQ_STORAGE=local).
    path("generations/", include("apps.exports.urls")),
    path("media/", include("apps.storage.urls")),
    path("api/v1/", include("apps.content.api.urls")),
    path("favicon.ico", favicon, name="favicon"),
    path("ops/", include("apps.ops.urls")),  # the operator console (staff only, read-only)
    path("analytics/", include("apps.analytics.urls")),  # staff only; reads the warehouse (docs/analytics.md)
]

# Under /api/ a page that does not exist answers JSON, like every other API error (apps.security).
handler404 = "apps.security.views.page_not_found"
