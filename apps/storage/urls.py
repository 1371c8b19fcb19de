from __future__ import annotations

from django.urls import path

from . import views

app_name = "storage"

urlpatterns = [
    path("<path:name>", views.media_file_view, name="media"),
]
