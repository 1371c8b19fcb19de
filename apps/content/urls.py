from __future__ import annotations

from django.urls import path, register_converter

from . import views
from .converters import SnowflakeConverter

register_converter(SnowflakeConverter, "snowflake")

app_name = "content"

urlpatterns = [
    path("", views.generation_list_view, name="list"),
    path("new/", views.generation_create_view, name="create"),
    path("<snowflake:generation_id>/", views.generation_detail_view, name="detail"),
    path("<snowflake:generation_id>/delete/", views.generation_delete_view, name="delete"),
]
