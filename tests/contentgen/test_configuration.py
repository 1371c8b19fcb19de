"""Starting the server: configuration mistakes end with a clear message, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_serve(env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("CONTENTGEN_")}
    return subprocess.run(
        [sys.executable, "-m", "contentgen_service", "serve", *flags],
        cwd=REPO_ROOT,
        env={**clean, "CONTENTGEN_TOKEN": "a-token-of-sufficient-length", **env},
        capture_output=True,
        check=False,
        text=True,
        timeout=30,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "env, expected",
    [
        (
            {"CONTENTGEN_MAX_CONCURRENCY": "lots"},
            "CONTENTGEN_MAX_CONCURRENCY='lots' is not valid: expected a whole number",
        ),
        (
            {"CONTENTGEN_BIND": "localhost"},
            "CONTENTGEN_BIND='localhost' is not valid: expected host:port",
        ),
        (
            {"CONTENTGEN_METRICS_PORT": "70000"},
            "CONTENTGEN_METRICS_PORT='70000' is not valid: expected a port number",
        ),
        (
            {"CONTENTGEN_BACKEND": "gpt"},
            "CONTENTGEN_BACKEND='gpt' is not valid: expected one of: ngram, openai",
        ),
        (
            {"CONTENTGEN_GRACE_SECONDS": "-1"},
            "CONTENTGEN_GRACE_SECONDS='-1' is not valid: expected a non-negative",
        ),
        (
            {"CONTENTGEN_INSECURE_NO_AUTH": "maybe"},
            "CONTENTGEN_INSECURE_NO_AUTH='maybe' is not valid: expected 1/0",
        ),
        ({"CONTENTGEN_TOKEN": ""}, "CONTENTGEN_TOKEN is not set"),
        (
            {"CONTENTGEN_TOKEN": "short"},
            "CONTENTGEN_TOKEN is 5 characters; use at least 16",
        ),
        (
            {"CONTENTGEN_TLS_CERT": "/tmp/cert.pem"},
            "CONTENTGEN_TLS_CERT and CONTENTGEN_TLS_KEY go together",
        ),
        (
            {"CONTENTGEN_BACKEND": "openai"},
            "CONTENTGEN_BACKEND=openai needs CONTENTGEN_OPENAI_BASE_URL and CONTENTGEN_OPENAI_MODEL",
        ),
        (
            {"CONTENTGEN_OPENAI_BASE_URL": "localhost:8000"},
            "CONTENTGEN_OPENAI_BASE_URL='localhost:8000' is not valid: expected an http://",
        ),
    ],
)
def test_a_malformed_setting_exits_with_status_2_naming_the_variable_and_the_expected_form(env, expected):
    result = run_serve(env)

    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_a_flag_wins_over_the_environment_and_is_named_when_malformed():
    result = run_serve({"CONTENTGEN_MAX_CONCURRENCY": "4"}, "--max-concurrency", "zero")

    assert result.returncode == 2
    assert "--max-concurrency='zero' is not valid" in result.stderr


@pytest.mark.slow
def test_a_port_in_use_is_reported_without_a_traceback(start_server, model_cache_dir):
    running = start_server()

    result = run_serve({"CONTENTGEN_CACHE_DIR": str(model_cache_dir)}, "--bind", running.target)

    assert result.returncode == 2
    assert f"cannot listen on {running.target}" in result.stderr
    assert "Traceback" not in result.stderr
