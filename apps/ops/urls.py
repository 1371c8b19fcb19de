from __future__ import annotations

from django.urls import path

from . import views

app_name = "ops"

urlpatterns = [
    path("", views.shard_map, name="map"),
    path("advice/", views.advice, name="advice"),
    path("moves/", views.move_list, name="moves"),
    path("moves/<int:move_id>/", views.move_detail, name="move"),
    path("moves/<int:move_id>/live", views.move_live, name="move-live"),
]
