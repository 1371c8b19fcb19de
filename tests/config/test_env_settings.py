"""A malformed environment setting stops start-up with a message naming the variable and the expected form."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from quantumquill.env import env_bool, env_float, env_int, parse_database_url, parse_shard_urls
from tests.conftest import child_env


def test_a_database_url_becomes_a_django_database_entry() -> None:
    config = parse_database_url(
        "postgres://app:s%40cret@db.internal:6432/quill?sslmode=require", variable="DATABASE_URL"
    )
    assert config["NAME"] == "quill" and config["USER"] == "app" and config["PASSWORD"] == "s@cret"
    assert config["HOST"] == "db.internal" and config["PORT"] == "6432"
    assert config["OPTIONS"] == {"sslmode": "require", "connect_timeout": "3"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://h/db", "only PostgreSQL is supported"),
        ("postgres://host:notaport/db", "not a valid URL"),
        ("postgres://host:5432/", "names no database"),
        ("postgres:///db", "names no host"),
    ],
)
def test_a_malformed_database_url_is_refused_with_the_expected_form(url: str, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message) as excinfo:
        parse_database_url(url, variable="DATABASE_URL")
    assert "DATABASE_URL" in str(excinfo.value)


@pytest.mark.parametrize("raw", ["shard1", "=postgres://h/d", "bad alias=postgres://h/d", "default=postgres://h/d"])
def test_a_malformed_shard_list_is_refused(raw: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="SHARD_DATABASE_URLS"):
        parse_shard_urls(raw, variable="SHARD_DATABASE_URLS")


def test_typed_readers_name_the_variable() -> None:
    with pytest.raises(ImproperlyConfigured, match="WORKERS='many' is not an integer"):
        env_int("WORKERS", 2, environ={"WORKERS": "many"})
    with pytest.raises(ImproperlyConfigured, match=r"RATIO=.* is above the maximum 1"):
        env_float("RATIO", 0.5, maximum=1, environ={"RATIO": "2"})
    with pytest.raises(ImproperlyConfigured, match="DEBUGGING='maybe' is not a boolean"):
        env_bool("DEBUGGING", False, environ={"DEBUGGING": "maybe"})


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DATABASE_URL", "sqlite:///db.sqlite3", "DATABASE_URL has scheme 'sqlite'"),
        ("SHARD_DATABASE_URLS", "shard1:postgres://h/d", "SHARD_DATABASE_URLS item"),
        ("SHARDMAP_REFRESH_INTERVAL", "soon", "SHARDMAP_REFRESH_INTERVAL='soon' is not a number"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL='localhost:6379' has scheme 'localhost'; expected redis://"),
        ("DJANGO_DEBUG", "perhaps", "DJANGO_DEBUG='perhaps' is not a boolean"),
    ],
)
def test_the_platform_refuses_to_start_on_a_malformed_setting(variable: str, value: str, message: str) -> None:
    env = child_env(REDIS_URL="redis://127.0.0.1:1/0", DJANGO_SECRET_KEY="x" * 50)
    env[variable] = value
    result = subprocess.run([sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


@pytest.mark.slow
def test_a_missing_secret_key_is_refused_rather_than_defaulted() -> None:
    env = child_env(REDIS_URL="redis://127.0.0.1:1/0")
    env.pop("DJANGO_SECRET_KEY", None)
    env["QQ_DEVSTACK_STATE"] = "/nonexistent/stack.json"
    result = subprocess.run([sys.executable, "manage.py", "check"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DJANGO_SECRET_KEY is not set" in result.stderr


SETTINGS_CLIENT_PROBE = """
import dataclasses, json
import django
django.setup()
from django.conf import settings
from apps.content.generator import client_config
print(json.dumps({"settings": dataclasses.asdict(client_config()), "job_limit": settings.CONTENTGEN["JOB_TIME_LIMIT"]},
                 default=str))
"""
DJANGO_FREE_CLIENT_PROBE = """
import dataclasses, json, sys
from contentgen_service.client import ClientConfig
assert "django" not in sys.modules
print(json.dumps(dataclasses.asdict(ClientConfig.from_env()), default=str))
"""


@pytest.mark.parametrize(
    "variables",
    [{}, {"CONTENTGEN_TIMEOUT_SECONDS": "12.5", "CONTENTGEN_MAX_ATTEMPTS": "5", "CONTENTGEN_TLS_CA_FILE": "/ca.pem"}],
)
def test_the_platform_and_a_process_without_django_configure_the_generation_client_alike(
    variables: dict[str, str],
) -> None:
    env = child_env(**variables)
    for name in ("CONTENTGEN_TIMEOUT_SECONDS", "CONTENTGEN_MAX_ATTEMPTS", "CONTENTGEN_TLS_CA_FILE"):
        if name not in variables:
            env.pop(name, None)

    def probe(code: str) -> dict[str, object]:
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout.splitlines()[-1]))

    platform, plain = probe(SETTINGS_CLIENT_PROBE), probe(DJANGO_FREE_CLIENT_PROBE)
    assert platform["settings"] == plain
    timeout = float(variables.get("CONTENTGEN_TIMEOUT_SECONDS", 60))
    assert plain["timeout_seconds"] == timeout and platform["job_limit"] == int(timeout) + 10
