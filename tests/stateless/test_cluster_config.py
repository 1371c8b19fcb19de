"""Redis Cluster settings: one form per store, explicit knobs, and a clear refusal to start on a wrong cluster."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from apps.platform.checks import check_statelessness
from quantumquill.devstack.session_cluster import session_mode
from quantumquill.devstack.stack import REPO_ROOT, free_port
from quantumquill.devstack.web import GunicornServer
from quantumquill.redis_cluster_env import CLUSTER_BACKEND, parse_cluster_nodes
from quantumquill.redis_env import default_cache, session_cache
from tests.conftest import child_env


def test_cluster_nodes_select_the_cluster_cache_with_explicit_timeouts_retries_and_redirects() -> None:
    config = session_cache(
        {
            "SESSION_REDIS_CLUSTER_NODES": "10.0.0.1:7000, 10.0.0.2:7000,[::1]:7001",
            "SESSION_REDIS_TIMEOUT": "0.5",
            "SESSION_REDIS_CLUSTER_RETRIES": "4",
            "SESSION_REDIS_CLUSTER_MAX_REDIRECTS": "8",
            "SESSION_REDIS_PASSWORD": "s3cret",
        }
    )
    assert config is not None
    assert config["BACKEND"] == CLUSTER_BACKEND
    assert config["LOCATION"] == ["10.0.0.1:7000", "10.0.0.2:7000", "::1:7001"]
    assert config["TIMEOUT"] is None  # each session sets its own expiry
    options = config["OPTIONS"]
    assert options["IGNORE_EXCEPTIONS"] is False  # an outage must reach the session engine
    assert options["SOCKET_TIMEOUT"] == options["SOCKET_CONNECT_TIMEOUT"] == 0.5
    assert (options["CLUSTER_RETRIES"], options["CLUSTER_MAX_REDIRECTS"]) == (4, 8)
    assert options["PASSWORD"] == "s3cret" and options["CLUSTER_TLS"] is False


def test_cluster_defaults_suit_a_session_store() -> None:
    options = session_cache({"SESSION_REDIS_CLUSTER_NODES": "cache-0:6379"})["OPTIONS"]  # type: ignore[index]
    assert (options["SOCKET_TIMEOUT"], options["CLUSTER_RETRIES"], options["CLUSTER_MAX_REDIRECTS"]) == (1.0, 2, 16)


def test_the_general_cache_can_be_a_cluster_too() -> None:
    config = default_cache({"REDIS_CLUSTER_NODES": "10.0.0.9:6379"}, hint="")
    assert config["BACKEND"] == CLUSTER_BACKEND and config["LOCATION"] == ["10.0.0.9:6379"]
    assert "IGNORE_EXCEPTIONS" not in config["OPTIONS"]  # a cache keeps django-redis's global choice


@pytest.mark.parametrize(
    "env",
    [
        {"SESSION_REDIS_URL": "redis://a:6379/0", "SESSION_REDIS_CLUSTER_NODES": "b:7000"},
        {"SESSION_REDIS_SENTINELS": "a:26379", "SESSION_REDIS_CLUSTER_NODES": "b:7000"},
    ],
)
def test_a_session_store_in_two_forms_is_refused(env: dict[str, str]) -> None:
    with pytest.raises(ImproperlyConfigured, match="set exactly one of SESSION_REDIS_URL, SESSION_REDIS_SENTINELS"):
        session_cache(env)


def test_a_general_cache_in_two_forms_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL and REDIS_CLUSTER_NODES are set together"):
        default_cache({"REDIS_URL": "redis://a:6379/0", "REDIS_CLUSTER_NODES": "b:7000"}, hint="")


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("redis://10.0.0.1:7000", "is a URL"),
        ("10.0.0.1", "is not HOST:PORT"),
        ("10.0.0.1:70000", "is not HOST:PORT"),
        (" , ", "lists no node"),
    ],
)
def test_malformed_cluster_nodes_name_the_variable_and_the_form(raw: str, problem: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=f"SESSION_REDIS_CLUSTER_NODES.*{problem}"):
        parse_cluster_nodes(raw, variable="SESSION_REDIS_CLUSTER_NODES")


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SESSION_REDIS_CLUSTER_RETRIES", "-1"), ("SESSION_REDIS_CLUSTER_MAX_REDIRECTS", "0")],
)
def test_out_of_range_knobs_are_refused(variable: str, value: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=variable):
        session_cache({"SESSION_REDIS_CLUSTER_NODES": "a:7000", variable: value})


def _manage_check(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=REPO_ROOT,
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _single_session_redis() -> str:
    location = urlsplit(str(settings.CACHES[settings.SESSION_CACHE_ALIAS]["LOCATION"]))
    return f"{location.hostname}:{location.port}"


@pytest.mark.slow
def test_unreachable_cluster_nodes_stop_manage_py_with_the_fix() -> None:
    result = _manage_check(SESSION_REDIS_URL="", SESSION_REDIS_CLUSTER_NODES=f"127.0.0.1:{free_port()}")
    assert result.returncode != 0
    assert "platform.E112" in result.stderr and "None of the cluster nodes" in result.stderr
    assert "SESSION_REDIS_CLUSTER_NODES" in result.stderr


@pytest.mark.slow
def test_a_single_redis_given_as_a_cluster_stops_manage_py_with_the_fix() -> None:
    result = _manage_check(SESSION_REDIS_URL="", SESSION_REDIS_CLUSTER_NODES=_single_session_redis())
    assert result.returncode != 0
    assert "platform.E112" in result.stderr and "is not a cluster node" in result.stderr


@pytest.mark.slow
def test_mixed_forms_stop_manage_py_before_anything_runs() -> None:
    result = _manage_check(SESSION_REDIS_CLUSTER_NODES="127.0.0.1:7000")  # SESSION_REDIS_URL is set too
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "are set together for the session store" in result.stderr


@pytest.mark.slow
def test_the_cluster_cache_cannot_be_the_celery_broker() -> None:
    result = _manage_check(REDIS_URL="", REDIS_CLUSTER_NODES="127.0.0.1:7000", CELERY_BROKER_URL="")
    assert result.returncode != 0 and "CELERY_BROKER_URL is not set" in result.stderr


@pytest.mark.slow
@pytest.mark.django_db
def test_gunicorn_refuses_to_start_on_a_single_redis_given_as_a_cluster(tmp_path: Path) -> None:
    env = child_env(DJANGO_DEBUG="0", SESSION_REDIS_URL="", SESSION_REDIS_CLUSTER_NODES=_single_session_redis())
    server = GunicornServer("app1", free_port(), env, tmp_path, workers=1, threads=1)
    try:
        with pytest.raises(RuntimeError, match="exited"):
            server.start(timeout=60)
    finally:
        server.stop(timeout=5)
    assert "is not a cluster node" in server.log_file.read_text()


def _check_ids(caches: dict[str, Any]) -> list[str]:
    with override_settings(QQ_HORIZONTAL=True, SESSION_ENGINE="apps.platform.session_store", CACHES=caches):
        return sorted(message.id for message in check_statelessness() if message.id)


def test_checks_see_a_session_cluster_that_ignores_errors() -> None:
    sessions = session_cache({"SESSION_REDIS_CLUSTER_NODES": "10.0.0.1:7000"})
    assert sessions is not None
    assert "platform.E104" not in _check_ids({**settings.CACHES, "sessions": sessions})
    sessions["OPTIONS"]["IGNORE_EXCEPTIONS"] = True
    assert "platform.E104" in _check_ids({**settings.CACHES, "sessions": sessions})


def test_checks_see_a_session_cluster_sharing_nodes_with_the_cache_cluster() -> None:
    sessions = session_cache({"SESSION_REDIS_CLUSTER_NODES": "10.0.0.1:7000,10.0.0.2:7000"})
    own = default_cache({"REDIS_CLUSTER_NODES": "10.0.0.9:7000"}, hint="")
    shared = default_cache({"REDIS_CLUSTER_NODES": "10.0.0.2:7000"}, hint="")
    assert "platform.W105" not in _check_ids({"default": own, "sessions": sessions})  # type: ignore[dict-item]
    assert "platform.W105" in _check_ids({"default": shared, "sessions": sessions})  # type: ignore[dict-item]


@pytest.mark.parametrize(("value", "mode"), [(None, "single"), ("cluster", "cluster"), (" Cluster ", "cluster")])
def test_make_run_puts_sessions_on_a_cluster_only_when_asked(value: str | None, mode: str) -> None:
    assert session_mode({} if value is None else {"QQ_DEVSTACK_SESSIONS": value}) == mode


def test_make_run_refuses_an_unknown_session_mode() -> None:
    with pytest.raises(ImproperlyConfigured, match="QQ_DEVSTACK_SESSIONS='sentinel'; expected one of single, cluster"):
        session_mode({"QQ_DEVSTACK_SESSIONS": "sentinel"})
