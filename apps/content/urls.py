from __future__ import annotations

from django.urls import path

from . import (
    converters,  # noqa: F401 - registers the "snowflake" converter
    views,
)

app_name = "content"

urlpatterns = [
    path("", views.generation_list_view, name="list"),
    path("new/", views.generation_create_view, name="create"),
    path("<snowflake:generation_id>/", views.generation_detail_view, name="detail"),
    path("<snowflake:generation_id>/delete/", views.generation_delete_view, name="delete"),
    path("<snowflake:generation_id>/stream/", views.generation_stream_view, name="stream"),
]
