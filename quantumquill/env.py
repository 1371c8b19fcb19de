"""Typed readers for environment settings.

Every endpoint and secret comes from the environment (twelve-factor). A value
that is present but malformed raises ``ImproperlyConfigured`` naming the
variable and the expected form, so a typo never turns into a silent default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

from contentgen_service.client import ClientConfig
from contentgen_service.envparse import ConfigError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None, *, environ: Mapping[str, str] | None = None) -> str | None:
    """Return the variable's value, or ``default`` when it is unset."""
    source = os.environ if environ is None else environ
    value = source.get(name)
    return default if value is None else value


def env_required(name: str, *, hint: str, environ: Mapping[str, str] | None = None) -> str:
    """Return the variable's value or explain how to set it."""
    value = env_str(name, environ=environ)
    if not value:
        raise ImproperlyConfigured(f"{name} is not set. {hint}")
    return value


def env_bool(name: str, default: bool, *, environ: Mapping[str, str] | None = None) -> bool:
    raw = env_str(name, environ=environ)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; expected one of 1/0, true/false, yes/no, on/off.")


def env_int(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> int:
    raw = env_str(name, environ=environ)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not an integer; expected a whole number such as {default}."
        ) from None
    _check_bounds(name, value, minimum, maximum)
    return value


def env_float(
    name: str,
    default: float,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> float:
    raw = env_str(name, environ=environ)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number; expected a value such as {default}.") from None
    _check_bounds(name, value, minimum, maximum)
    return value


def env_list(name: str, default: list[str] | None = None, *, environ: Mapping[str, str] | None = None) -> list[str]:
    """A comma-separated list; blank items are dropped."""
    raw = env_str(name, environ=environ)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


_RATE_PERIODS = {"s", "sec", "second", "m", "min", "minute", "h", "hour", "d", "day"}


def env_rate(name: str, default: str, *, environ: Mapping[str, str] | None = None) -> str:
    """A request rate such as ``120/min`` (periods: s, min, hour, day), as Django REST framework reads it."""
    raw = (env_str(name, environ=environ) or "").strip() or default
    count, sep, period = raw.partition("/")
    if not sep or not count.strip().isdigit() or period.strip().lower() not in _RATE_PERIODS:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a rate; expected COUNT/PERIOD such as {default}.")
    return f"{int(count)}/{period.strip().lower()}"


def _check_bounds(name: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum {minimum}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={value} is above the maximum {maximum}.")


def parse_database_url(url: str, *, variable: str) -> dict[str, Any]:
    """Turn ``postgres://user:pass@host:port/name?opt=value`` into a Django DATABASES entry.

    ``?host=/path/to/socket/dir`` selects a Unix socket; other query options
    (``sslmode``, ``connect_timeout``, ...) go to ``OPTIONS``.
    """
    expected = "postgres://USER:PASSWORD@HOST:PORT/DBNAME (or postgresql://...)"
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ImproperlyConfigured(f"{variable} is not a valid URL ({exc}); expected {expected}.") from None
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured(
            f"{variable} has scheme {parts.scheme or '(none)'!r}; only PostgreSQL is supported. Expected {expected}."
        )
    name = unquote(parts.path.lstrip("/"))
    if not name or "/" in name:
        raise ImproperlyConfigured(f"{variable} names no database (the path after the host); expected {expected}.")
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    host = options.pop("host", None) or unquote(parts.hostname or "")
    if not host:
        raise ImproperlyConfigured(f"{variable} names no host; expected {expected}.")
    options.setdefault("connect_timeout", "3")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": host,
        "PORT": str(port or ""),
        "OPTIONS": options,
    }


def parse_shard_urls(raw: str, *, variable: str) -> dict[str, str]:
    """Parse ``alias=url,alias=url`` (aliases are Python identifiers) into a mapping."""
    result: dict[str, str] = {}
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        alias, sep, url = item.partition("=")
        alias = alias.strip()
        if not sep or not alias.isidentifier() or not url.strip():
            raise ImproperlyConfigured(
                f"{variable} item {item!r} is malformed; expected a comma-separated list of "
                "ALIAS=postgres://HOST:PORT/DBNAME with ALIAS such as shard1."
            )
        if alias in result or alias == "default":
            raise ImproperlyConfigured(f"{variable} lists alias {alias!r} twice or uses the reserved alias 'default'.")
        result[alias] = url.strip()
    return result


def env_contentgen_client(*, environ: Mapping[str, str]) -> ClientConfig:
    """The generation service's client configuration (``CONTENTGEN_TARGET``, ``_TOKEN``, ``_TIMEOUT_SECONDS``, ...).

    ``ClientConfig.from_env`` is the only reader of these variables, with its own defaults and limits, so that
    the platform and any process without Django agree on them. The service's parsers stay in
    ``contentgen_service.envparse`` (the service never imports Django) and are not reused for the platform's
    own variables: no variable is read by both sets of helpers.
    """
    try:
        return ClientConfig.from_env(environ)
    except ConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from None
