from __future__ import annotations

from django.urls import include, path
from django.views.generic import TemplateView

from apps.platform.views import healthz

urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    path("accounts/", include("apps.accounts.urls")),
    path("generations/", include("apps.content.urls")),
    path("healthz", healthz, name="healthz"),  # apps.platform: liveness for nginx/supervisors
    # Files: exports of generations, and local media behind signed links (QQ_STORAGE=local).
    path("generations/", include("apps.exports.urls")),
    path("media/", include("apps.storage.urls")),
    path("api/v1/", include("apps.content.api.urls")),
    path("analytics/", include("apps.analytics.urls")),  # staff only; reads the warehouse (docs/analytics.md)
]
