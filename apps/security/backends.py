"""django-axes' lockout check as an authentication backend, for requests only."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest


class LoginThrottleBackend(AxesStandaloneBackend):
    """Refuses logins of locked-out usernames and addresses; ``authenticate()`` without a request (a management
    command, a shell, a test) has no client to throttle and passes through to the next backend."""

    def authenticate(self, request: HttpRequest | None, *args: Any, **kwargs: Any) -> None:
        if request is None:
            return None
        return super().authenticate(request, *args, **kwargs)
