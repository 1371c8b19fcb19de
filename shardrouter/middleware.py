"""Set the shard context to the logged-in user for the duration of each request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from .context import _current_key


def _user_key(request: HttpRequest) -> int | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return int(user.pk)


class ShardContextMiddleware:
    """Route unqualified queries on sharded models to the logged-in user's shard.

    Place it after ``AuthenticationMiddleware``. Works in both WSGI and ASGI
    stacks; the context is reset when the response is returned, so nothing
    carries over to the next request served by the same thread or task.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self.__acall__(request)
        token = _current_key.set(_user_key(request))
        try:
            response: HttpResponseBase = self.get_response(request)
            return response
        finally:
            _current_key.reset(token)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        from asgiref.sync import sync_to_async

        key = await sync_to_async(_user_key)(request)
        token = _current_key.set(key)
        try:
            response: HttpResponseBase = await self.get_response(request)
            return response
        finally:
            _current_key.reset(token)
