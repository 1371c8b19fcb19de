"""HTTP calls against a real app server, for the PgBouncer failure tests."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def call(
    base_url: str, path: str, *, token: str, body: dict[str, Any] | None = None, timeout: float = 30
) -> tuple[int, dict[str, str], str]:
    """GET (or POST ``body`` as JSON) with a token; returns status, headers and text, whatever the status."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base_url + path, data=data, method="POST" if data else "GET")
    request.add_header("Authorization", f"Token {token}")
    if data:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()
