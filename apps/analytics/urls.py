from __future__ import annotations

from django.urls import path

from .views import analytics_view

app_name = "analytics"
urlpatterns = [path("", analytics_view, name="index")]
