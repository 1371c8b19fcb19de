from django.urls import path

from notes import views

urlpatterns = [
    path("", views.home),
    path("notebooks/<int:pk>/", views.notebook),
    path("notebooks/<int:pk>/add/", views.add_note),
    path("notes/", views.my_notes),
    path("search/", views.search),
    path("feed/", views.feed),
    path("staff/report/", views.report),
]
