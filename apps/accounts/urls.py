from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from apps.security.views import failed_logins

from . import views

app_name = "accounts"

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="accounts/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/", views.account, name="account"),
    path("account/password/", views.password_change, name="password-change"),
    path("account/tokens/", views.token_create, name="token-create"),
    path("account/tokens/<int:token_id>/revoke/", views.token_revoke, name="token-revoke"),
    path("account/tokens/<int:token_id>/rotate/", views.token_rotate, name="token-rotate"),
    path("account/delete/", views.account_delete_view, name="account-delete"),
    path("staff/failed-logins/", failed_logins, name="failed-logins"),
]
