"""Session store settings come from the environment; a malformed value names its variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from quantumquill.devstack.stack import REPO_ROOT
from quantumquill.redis_env import parse_redis_url, session_cache, session_store


def test_sessions_get_their_own_cache_that_never_hides_redis_errors() -> None:
    config = session_cache({"SESSION_REDIS_URL": "redis://10.0.0.7:6380/3"})
    assert config is not None
    assert config["LOCATION"] == "redis://10.0.0.7:6380/3"
    assert config["BACKEND"] == "django_redis.cache.RedisCache"
    assert config["OPTIONS"]["IGNORE_EXCEPTIONS"] is False
    assert config["TIMEOUT"] is None  # each session sets its own expiry


def test_without_a_session_redis_there_is_no_sessions_cache() -> None:
    assert session_cache({}) is None


def test_sentinels_select_django_redis_sentinel_client_reading_the_primary_only() -> None:
    config = session_cache(
        {
            "SESSION_REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26379,[::1]:26380",
            "SESSION_REDIS_SENTINEL_SERVICE": "qqsessions",
            "SESSION_REDIS_DB": "2",
            "SESSION_REDIS_PASSWORD": "s3cret",
        }
    )
    assert config is not None
    options = config["OPTIONS"]
    assert options["CLIENT_CLASS"] == "django_redis.client.SentinelClient"
    assert options["CONNECTION_FACTORY"] == "django_redis.pool.SentinelConnectionFactory"
    assert options["SENTINELS"] == [("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380)]
    assert options["PASSWORD"] == "s3cret"
    # A single location on the primary: a replica lagging behind a login would look like a logout.
    assert config["LOCATION"] == ["redis://qqsessions/2?is_master=1"]


@pytest.mark.parametrize(
    "url",
    ["http://cache:6379/0", "redis://cache:port/0", "redis:///0", "redis://cache:6379/sessions", "unix://"],
)
def test_a_malformed_session_redis_url_names_the_variable(url: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="SESSION_REDIS_URL"):
        session_cache({"SESSION_REDIS_URL": url})


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"SESSION_REDIS_SENTINELS": "10.0.0.1"}, "SESSION_REDIS_SENTINELS"),
        ({"SESSION_REDIS_SENTINELS": "10.0.0.1:0"}, "SESSION_REDIS_SENTINELS"),
        ({"SESSION_REDIS_SENTINELS": "10.0.0.1:99999"}, "SESSION_REDIS_SENTINELS"),
        ({"SESSION_REDIS_SENTINELS": ":26379"}, "SESSION_REDIS_SENTINELS"),
        ({"SESSION_REDIS_SENTINELS": " , "}, "SESSION_REDIS_SENTINELS"),
        ({"SESSION_REDIS_SENTINELS": "10.0.0.1:26379"}, "SESSION_REDIS_SENTINEL_SERVICE"),
        ({"SESSION_REDIS_SENTINELS": "h:26379", "SESSION_REDIS_SENTINEL_SERVICE": "my master"}, "SENTINEL_SERVICE"),
        ({"SESSION_REDIS_SENTINELS": "h:26379", "SESSION_REDIS_SENTINEL_SERVICE": "MyMaster"}, "SENTINEL_SERVICE"),
        (
            {"SESSION_REDIS_SENTINELS": "h:26379", "SESSION_REDIS_SENTINEL_SERVICE": "m", "SESSION_REDIS_DB": "x"},
            "SESSION_REDIS_DB",
        ),
        ({"SESSION_REDIS_URL": "redis://h:6379/0", "SESSION_REDIS_TIMEOUT": "soon"}, "SESSION_REDIS_TIMEOUT"),
    ],
)
def test_a_malformed_sentinel_setting_names_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=variable):
        session_cache(env)


def test_a_url_and_sentinels_together_are_refused_rather_than_one_silently_winning() -> None:
    with pytest.raises(ImproperlyConfigured, match="set together"):
        session_cache(
            {
                "SESSION_REDIS_URL": "redis://h:6379/0",
                "SESSION_REDIS_SENTINELS": "h:26379",
                "SESSION_REDIS_SENTINEL_SERVICE": "m",
            }
        )


def test_the_session_store_is_redis_unless_the_database_is_chosen_explicitly() -> None:
    assert session_store({}) == "redis"
    assert session_store({"QQ_SESSION_STORE": "database"}) == "database"
    with pytest.raises(ImproperlyConfigured, match="QQ_SESSION_STORE"):
        session_store({"QQ_SESSION_STORE": "file"})


def test_a_valid_redis_url_is_accepted_as_given() -> None:
    assert parse_redis_url(" rediss://:pw@cache.internal:6380/1 ", variable="X") == "rediss://:pw@cache.internal:6380/1"
    assert parse_redis_url("unix:///run/redis.sock?db=2", variable="X") == "unix:///run/redis.sock?db=2"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"REDIS_URL": "redis://cache:notaport/0"}, "REDIS_URL"),
        ({"SESSION_REDIS_URL": "memcached://x"}, "SESSION_REDIS_URL"),
    ],
)
def test_settings_refuse_to_load_with_a_malformed_redis_url(env: dict[str, str], variable: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=REPO_ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "quantumquill.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and variable in result.stderr
