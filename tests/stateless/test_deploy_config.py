"""The nginx template renders to a configuration nginx accepts; gunicorn takes its settings from the environment."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.render_nginx import NginxConfigError, NginxSettings, render_nginx_conf
from quantumquill.devstack.stack import REPO_ROOT
from quantumquill.devstack.web import NginxBalancer, nginx_binary


def _rendered(tmp_path: Path) -> str:
    return render_nginx_conf(NginxBalancer(18080, ["127.0.0.1:8001", "127.0.0.1:8002"], tmp_path).settings())


def test_the_rendered_configuration_passes_nginx_own_test(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(_rendered(tmp_path))
    result = subprocess.run(
        [nginx_binary(), "-t", "-p", str(tmp_path), "-c", str(conf), "-e", str(tmp_path / "error.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "{{" not in conf.read_text()


def test_the_balancer_is_round_robin_without_sticky_sessions(tmp_path: Path) -> None:
    text = _rendered(tmp_path)
    upstream = re.search(r"upstream quantumquill_app \{(.*?)\}", text, re.S)
    assert upstream is not None
    directives = [
        line.split()[0] for line in upstream.group(1).splitlines() if line.strip() and not line.strip().startswith("#")
    ]
    assert directives == ["server", "server", "keepalive", "keepalive_timeout"]  # no ip_hash/hash/sticky/least_conn
    assert "max_fails=1 fail_timeout=2s" in upstream.group(1)


def test_only_requests_that_never_reached_a_server_are_retried_elsewhere(tmp_path: Path) -> None:
    text = _rendered(tmp_path)
    assert re.search(r"^\s*proxy_next_upstream error timeout;$", text, re.M)
    # Without non_idempotent, nginx never re-sends a POST that an app server may already have processed.
    assert "non_idempotent" not in re.sub(r"#.*", "", text)


def test_request_ids_are_passed_to_the_app_servers_returned_and_logged(tmp_path: Path) -> None:
    text = _rendered(tmp_path)
    assert "proxy_set_header X-Request-ID $qq_request_id;" in text
    assert "add_header X-Request-ID $qq_request_id always;" in text
    assert "request_id=$qq_request_id" in text and "served_by=$upstream_http_x_served_by" in text
    assert 'proxy_set_header Connection "";' in text and "proxy_http_version 1.1;" in text  # upstream keepalive


@pytest.mark.parametrize(
    "settings",
    [
        NginxSettings(upstreams=[]),
        NginxSettings(upstreams=["127.0.0.1:8000; evil"]),
        NginxSettings(upstreams=["http://app:8000"]),
        NginxSettings(upstreams=["app:8000"], listen="80; include /etc/passwd"),
    ],
)
def test_values_that_would_break_the_configuration_are_refused(settings: NginxSettings) -> None:
    with pytest.raises(NginxConfigError):
        render_nginx_conf(settings)


def test_an_unknown_placeholder_is_an_error_not_left_in_the_output() -> None:
    with pytest.raises(NginxConfigError, match="upstream_pool"):
        render_nginx_conf(NginxSettings(upstreams=["app:8000"]), template="x {{ upstream_pool }}")


def test_the_renderer_command_line_prints_the_configuration() -> None:
    result = subprocess.run(
        [sys.executable, "deploy/render_nginx.py", "--upstream", "10.0.0.11:8000", "--upstream", "10.0.0.12:8000"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "server 10.0.0.11:8000 max_fails=2 fail_timeout=10s;" in result.stdout


def _gunicorn_config(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "--print-config"],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_gunicorn_takes_workers_threads_timeouts_and_recycling_from_the_environment() -> None:
    result = _gunicorn_config(
        GUNICORN_BIND="127.0.0.1:9123",
        GUNICORN_WORKERS="3",
        GUNICORN_THREADS="8",
        GUNICORN_TIMEOUT="45",
        GUNICORN_GRACEFUL_TIMEOUT="20",
        GUNICORN_MAX_REQUESTS="500",
    )
    assert result.returncode == 0, result.stderr
    printed = dict(
        (key.strip(), value.strip()) for key, _, value in (line.partition("=") for line in result.stdout.splitlines())
    )
    assert printed["bind"] == "['127.0.0.1:9123']"
    assert (printed["workers"], printed["threads"], printed["worker_class"]) == ("3", "8", "gthread")
    assert (printed["timeout"], printed["graceful_timeout"]) == ("45", "20")
    assert (printed["max_requests"], printed["max_requests_jitter"]) == ("500", "50")
    assert "x-request-id" in printed["access_log_format"] and "x-served-by" in printed["access_log_format"]
    assert printed["control_socket_disable"] == "True"


@pytest.mark.slow
def test_gunicorn_refuses_a_malformed_setting_naming_the_variable() -> None:
    result = _gunicorn_config(GUNICORN_WORKERS="many")
    assert result.returncode != 0
    assert "GUNICORN_WORKERS" in result.stdout + result.stderr
