from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        user_logged_in.connect(_remember_session, dispatch_uid="accounts.remember_session")


def _remember_session(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Index the new session under its user, so a password change or deletion can end it."""
    from .sessions import user_session_add

    session = getattr(request, "session", None)
    if session is not None and session.session_key and user is not None:
        user_session_add(user_id=int(user.pk), session_key=session.session_key)
