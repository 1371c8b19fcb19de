from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.content import converters  # noqa: F401 - registers the "snowflake" converter
from apps.security.api import ApiTokenDetailView, ApiTokenListView, ApiTokenRotateView, AuthTokenView

from .views import GenerationViewSet

app_name = "api"

urlpatterns = [
    path("auth/token/", AuthTokenView.as_view(), name="auth-token"),
    path("auth/tokens/", ApiTokenListView.as_view(), name="token-list"),
    path("auth/tokens/<int:id>/", ApiTokenDetailView.as_view(), name="token-detail"),
    path("auth/tokens/<int:id>/rotate/", ApiTokenRotateView.as_view(), name="token-rotate"),
    path("generations/", GenerationViewSet.as_view({"get": "list", "post": "create"}), name="generation-list"),
    path(
        "generations/<snowflake:id>/",
        GenerationViewSet.as_view({"get": "retrieve", "delete": "destroy"}),
        name="generation-detail",
    ),
    path(
        "generations/<snowflake:id>/stream/",
        GenerationViewSet.as_view({"get": "stream"}),
        name="generation-stream",
    ),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
]
