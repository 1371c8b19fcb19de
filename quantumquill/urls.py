from __future__ import annotations

from django.urls import include, path
from django.views.generic import TemplateView

urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    path("accounts/", include("apps.accounts.urls")),
    path("generations/", include("apps.content.urls")),
    path("api/v1/", include("apps.content.api.urls")),
]
