"""Helpers shared by every test folder: wait for a condition instead of sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float = 15.0,
    what: str = "condition",
    poll: float = 0.05,
    ignoring: tuple[type[BaseException], ...] = (),
) -> Any:
    """Poll ``predicate`` until it returns something truthy and return that; fail after ``timeout`` seconds.

    ``ignoring``: exceptions that mean "not yet" (a server still starting refuses connections); the last one
    is chained to the timeout's error.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except ignoring as exc:
            last_error, value = exc, None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}") from last_error
        time.sleep(poll)
