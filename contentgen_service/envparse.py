"""Parsing settings from text (environment variables, flags) with actionable errors.

Shared by the server's configuration and the client's ``ClientConfig.from_env``.
Each parser takes the raw text and returns the value, or raises ValueError
saying what form was expected.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")


class ConfigError(Exception):
    """A setting is missing or malformed; the message says which and how to fix it."""


def parse_bind(text: str) -> str:
    """Parse ``host:port`` (``[::1]:port`` for IPv6); port 0 picks a free port."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("expected host:port, e.g. 127.0.0.1:50051, 0.0.0.0:50051 or [::]:50051")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError("expected [ipv6-address]:port")
        ipaddress.IPv6Address(host[1:-1])
    return text


def parse_positive_int(text: str) -> int:
    """Parse an integer of at least 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise ValueError("expected a whole number of at least 1")
    return int(text)


def parse_port(text: str) -> int:
    """Parse a TCP port, 0 meaning any free port."""
    if not text.strip().isdigit() or int(text) > 65535:
        raise ValueError("expected a port number from 0 to 65535 (0 picks a free port)")
    return int(text)


def _non_negative(text: str, unit: str, example: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a number of {unit}, e.g. {example}") from None
    if not 0 <= value < float("inf"):
        raise ValueError(f"expected a non-negative, finite number of {unit}")
    return value


def parse_seconds(text: str) -> float:
    """Parse a non-negative number of seconds."""
    return _non_negative(text, "seconds", "20 or 0.5")


def seconds_between(minimum: float, maximum: float) -> Callable[[str], float]:
    """Return a parser of a number of seconds from ``minimum`` to ``maximum``."""

    def parse(text: str) -> float:
        value = parse_seconds(text)
        if not minimum <= value <= maximum:
            raise ValueError(f"expected a number of seconds from {minimum:g} to {maximum:g}")
        return value

    return parse


def int_between(minimum: int, maximum: int) -> Callable[[str], int]:
    """Return a parser of a whole number from ``minimum`` to ``maximum``."""

    def parse(text: str) -> int:
        if not text.strip().isdigit() or not minimum <= int(text) <= maximum:
            raise ValueError(f"expected a whole number from {minimum} to {maximum}")
        return int(text)

    return parse


def parse_milliseconds(text: str) -> float:
    """Parse a non-negative number of milliseconds."""
    return _non_negative(text, "milliseconds", "20")


def parse_bool(text: str) -> bool:
    """Parse 1/0, true/false, yes/no, on/off."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def choice(*allowed: str) -> Callable[[str], str]:
    """Return a parser accepting only ``allowed`` values."""

    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError(f"expected one of: {', '.join(allowed)}")
        return text

    return parse


def parse_http_url(text: str) -> str:
    """Parse an http(s) URL with a host."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL with a host, e.g. http://127.0.0.1:8000/v1")
    return text


def parse_ngram_order(text: str) -> int:
    """Parse the n-gram order (2 to 5)."""
    if not text.strip().isdigit() or not 2 <= int(text) <= 5:
        raise ValueError("expected a whole number from 2 to 5")
    return int(text)


def parse_setting(source: str, raw: str, parse: Callable[[str], T]) -> T:
    """Parse ``raw``; on failure raise ConfigError naming ``source`` and the expected form."""
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{source}={raw!r} is not valid: {exc}") from None


def env_setting(environ: Mapping[str, str], name: str, parse: Callable[[str], T], default: T) -> T:
    """Return the parsed environment variable ``name``, or ``default`` when unset or empty."""
    raw = environ.get(name, "")
    return default if raw == "" else parse_setting(name, raw, parse)
