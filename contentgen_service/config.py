"""Server settings: command-line options, each also readable from the environment.

A value given on the command line wins over the environment variable, which
wins over the default. Secrets (the shared token, the upstream API key) are
read from the environment or a file only, never from argv, which other users
of the machine can see in ``ps``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contentgen_service.backends.openai import OpenAISettings
from contentgen_service.envparse import (
    ConfigError,
    choice,
    parse_bind,
    parse_bool,
    parse_http_url,
    parse_milliseconds,
    parse_ngram_order,
    parse_port,
    parse_positive_int,
    parse_seconds,
    parse_setting,
)
from contentgen_service.validation import RequestLimits

MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class Option:
    """One setting: its flag, environment variable, parser and default."""

    name: str
    env: str
    parse: Callable[[str], Any]
    default: Any
    help: str


OPTIONS = (
    Option(
        "bind",
        "CONTENTGEN_BIND",
        parse_bind,
        "127.0.0.1:50051",
        "address to listen on, host:port",
    ),
    Option(
        "token_file",
        "CONTENTGEN_TOKEN_FILE",
        Path,
        None,
        "read the shared token from this file instead of CONTENTGEN_TOKEN",
    ),
    Option(
        "insecure_no_auth",
        "CONTENTGEN_INSECURE_NO_AUTH",
        parse_bool,
        False,
        "development only: accept calls without a token",
    ),
    Option(
        "max_concurrency",
        "CONTENTGEN_MAX_CONCURRENCY",
        parse_positive_int,
        8,
        "generations run at once; more are refused with RESOURCE_EXHAUSTED",
    ),
    Option(
        "backend",
        "CONTENTGEN_BACKEND",
        choice("ngram", "openai"),
        "ngram",
        "text generator: ngram (local model) or openai (OpenAI-compatible server)",
    ),
    Option(
        "metrics_port",
        "CONTENTGEN_METRICS_PORT",
        parse_port,
        None,
        "serve Prometheus metrics on this port (unset: no metrics server)",
    ),
    Option(
        "metrics_host",
        "CONTENTGEN_METRICS_HOST",
        str,
        "127.0.0.1",
        "address the metrics server listens on",
    ),
    Option(
        "tls_cert",
        "CONTENTGEN_TLS_CERT",
        Path,
        None,
        "PEM certificate chain; with --tls-key, serve TLS",
    ),
    Option("tls_key", "CONTENTGEN_TLS_KEY", Path, None, "PEM private key of --tls-cert"),
    Option(
        "grace_seconds",
        "CONTENTGEN_GRACE_SECONDS",
        parse_seconds,
        20.0,
        "on SIGTERM, how long running calls may take to finish",
    ),
    Option(
        "cache_dir",
        "CONTENTGEN_CACHE_DIR",
        Path,
        None,
        "where the trained n-gram model is cached (default: $XDG_CACHE_HOME/quantumquill-contentgen)",
    ),
    Option(
        "ngram_order",
        "CONTENTGEN_NGRAM_ORDER",
        parse_ngram_order,
        3,
        "n-gram model order (3 = trigrams)",
    ),
    Option(
        "token_interval_ms",
        "CONTENTGEN_TOKEN_INTERVAL_MS",
        parse_milliseconds,
        0.0,
        "pause after each token, in milliseconds: pacing for demos and tests, keep 0 in production",
    ),
    Option(
        "max_prompt_chars",
        "CONTENTGEN_MAX_PROMPT_CHARS",
        parse_positive_int,
        RequestLimits.max_prompt_chars,
        "longest prompt accepted, in characters",
    ),
    Option(
        "max_tokens_limit",
        "CONTENTGEN_MAX_TOKENS_LIMIT",
        parse_positive_int,
        RequestLimits.max_tokens,
        "largest max_tokens a request may ask for",
    ),
    Option(
        "log_level",
        "CONTENTGEN_LOG_LEVEL",
        choice("DEBUG", "INFO", "WARNING", "ERROR"),
        "INFO",
        "log level",
    ),
    Option(
        "openai_base_url",
        "CONTENTGEN_OPENAI_BASE_URL",
        parse_http_url,
        None,
        "openai backend: API base URL up to the version, e.g. http://127.0.0.1:8000/v1",
    ),
    Option(
        "openai_model",
        "CONTENTGEN_OPENAI_MODEL",
        str,
        None,
        "openai backend: model name",
    ),
    Option(
        "openai_api",
        "CONTENTGEN_OPENAI_API",
        choice("chat", "completions"),
        "chat",
        "openai backend: /chat/completions or /completions",
    ),
    Option(
        "openai_connect_timeout",
        "CONTENTGEN_OPENAI_CONNECT_TIMEOUT",
        parse_seconds,
        5.0,
        "openai backend: seconds to wait for a connection",
    ),
    Option(
        "openai_read_timeout",
        "CONTENTGEN_OPENAI_READ_TIMEOUT",
        parse_seconds,
        60.0,
        "openai backend: longest silence between streamed events, in seconds",
    ),
)
SECRET_ENV = ("CONTENTGEN_TOKEN", "CONTENTGEN_OPENAI_API_KEY")


@dataclass(frozen=True)
class ServerConfig:
    """Everything ``serve()`` needs, validated."""

    bind: str
    token: str | None
    max_concurrency: int
    backend: str
    metrics_port: int | None
    metrics_host: str
    tls_cert: Path | None
    tls_key: Path | None
    grace_seconds: float
    cache_dir: Path
    ngram_order: int
    token_interval_ms: float
    limits: RequestLimits
    log_level: str
    openai: OpenAISettings | None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add a ``--flag`` for every option that has one (values are parsed later)."""
    for option in OPTIONS:
        if option.parse is parse_bool:
            parser.add_argument(
                "--" + option.name.replace("_", "-"),
                action="store_const",
                const="1",
                default=None,
                help=f"{option.help} [env {option.env}]",
            )
        else:
            shown = "" if option.default is None else f"; default {option.default}"
            parser.add_argument(
                "--" + option.name.replace("_", "-"),
                default=None,
                metavar=option.name.split("_")[-1].upper(),
                help=f"{option.help} [env {option.env}{shown}]",
            )


def _resolve(option: Option, cli_value: str | None, environ: Mapping[str, str]) -> Any:
    if cli_value is not None:
        source, raw = "--" + option.name.replace("_", "-"), cli_value
    elif environ.get(option.env, "") != "":
        source, raw = option.env, environ[option.env]
    else:
        return option.default
    return parse_setting(source, raw, option.parse)


def _default_cache_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "quantumquill-contentgen"


def _read_token(values: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    token = environ.get("CONTENTGEN_TOKEN") or None
    token_file: Path | None = values["token_file"]
    if token_file is not None:
        if token:
            raise ConfigError("set either CONTENTGEN_TOKEN or CONTENTGEN_TOKEN_FILE, not both")
        try:
            token = token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {token_file}: {exc.strerror}") from None
    if values["insecure_no_auth"]:
        if token:
            raise ConfigError("a token is configured and --insecure-no-auth is set: drop one of them")
        return None
    if not token:
        raise ConfigError(
            "CONTENTGEN_TOKEN is not set: set it to a shared secret of at least 16 characters "
            "(python -c 'import secrets; print(secrets.token_urlsafe(32))'), "
            "or pass --insecure-no-auth on a development machine"
        )
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(f"CONTENTGEN_TOKEN is {len(token)} characters; use at least {MIN_TOKEN_CHARS}")
    return token


def config_from(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> ServerConfig:
    """Build the server configuration from parsed arguments and the environment.

    Raises ConfigError naming the flag or variable at fault and the expected form.
    """
    values = {option.name: _resolve(option, getattr(args, option.name, None), environ) for option in OPTIONS}
    if (values["tls_cert"] is None) != (values["tls_key"] is None):
        raise ConfigError("CONTENTGEN_TLS_CERT and CONTENTGEN_TLS_KEY go together: set both to serve TLS, or neither")
    openai = None
    if values["backend"] == "openai":
        missing = [
            option.env
            for option in OPTIONS
            if option.name in ("openai_base_url", "openai_model") and values[option.name] is None
        ]
        if missing:
            raise ConfigError(
                f"CONTENTGEN_BACKEND=openai needs {' and '.join(missing)} "
                "(for Ollama: http://127.0.0.1:11434/v1 and a pulled model such as llama3.2)"
            )
        openai = OpenAISettings(
            base_url=values["openai_base_url"],
            model=values["openai_model"],
            api_key=environ.get("CONTENTGEN_OPENAI_API_KEY") or None,
            api=values["openai_api"],
            connect_timeout=values["openai_connect_timeout"],
            read_timeout=values["openai_read_timeout"],
        )
    return ServerConfig(
        bind=values["bind"],
        token=_read_token(values, environ),
        max_concurrency=values["max_concurrency"],
        backend=values["backend"],
        metrics_port=values["metrics_port"],
        metrics_host=values["metrics_host"],
        tls_cert=values["tls_cert"],
        tls_key=values["tls_key"],
        grace_seconds=values["grace_seconds"],
        cache_dir=values["cache_dir"] or _default_cache_dir(environ),
        ngram_order=values["ngram_order"],
        token_interval_ms=values["token_interval_ms"],
        limits=RequestLimits(
            max_prompt_chars=values["max_prompt_chars"],
            max_tokens=values["max_tokens_limit"],
        ),
        log_level=values["log_level"],
        openai=openai,
    )
