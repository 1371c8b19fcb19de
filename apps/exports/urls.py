from __future__ import annotations

from django.urls import path

import apps.content.urls  # noqa: F401 - registers the <snowflake:> converter these routes use

from . import views

app_name = "exports"

urlpatterns = [
    path("<snowflake:generation_id>/export/<slug:fmt>/", views.export_view, name="export"),
]
