"""HTTPS settings from the environment: secure by default without DEBUG, and `check --deploy` is clean."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from django.test import Client

from quantumquill.devstack.stack import REPO_ROOT
from tests.conftest import child_env

PRODUCTION = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "x" * 20 + "-production-like-secret-key-of-fifty-plus-characters",
    "DJANGO_ALLOWED_HOSTS": "quill.example.com",
}


def settings_in_child(**env: str) -> dict[str, Any]:
    """The security settings as a fresh Django process builds them from ``env``."""
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; print(json.dumps({n: getattr(s, n, None)"
        " for n in ['SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS',"
        " 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD', 'SECURE_PROXY_SSL_HEADER']}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], env=child_env(**env), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
@pytest.mark.django_db
def test_check_deploy_is_clean_with_production_settings() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        # One app server with files on its disk: the horizontal-scaling checks are not what this test is about.
        env=child_env(**PRODUCTION, CONTENTGEN_TOKEN="a-shared-secret", QQ_HORIZONTAL="0"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.slow
@pytest.mark.django_db
def test_without_debug_cookies_are_secure_hsts_is_on_and_the_proxy_header_is_trusted() -> None:
    assert settings_in_child(**PRODUCTION) == {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }


@pytest.mark.slow
@pytest.mark.django_db
def test_each_https_setting_can_be_set_from_the_environment() -> None:
    configured = settings_in_child(
        **PRODUCTION,
        DJANGO_SECURE_HSTS_SECONDS="600",
        DJANGO_SECURE_HSTS_PRELOAD="0",
        DJANGO_SECURE_SSL_REDIRECT="0",
        QQ_TRUST_PROXY_HEADERS="0",
    )
    assert configured["SECURE_HSTS_SECONDS"] == 600
    assert configured["SECURE_HSTS_PRELOAD"] is False
    assert configured["SECURE_SSL_REDIRECT"] is False
    assert configured["SECURE_PROXY_SSL_HEADER"] is None
    assert configured["SESSION_COOKIE_SECURE"] is True


@pytest.mark.slow
@pytest.mark.django_db
def test_debug_keeps_plain_http_for_local_work() -> None:
    local = settings_in_child(DJANGO_DEBUG="1")
    assert local["SECURE_SSL_REDIRECT"] is False and local["SESSION_COOKIE_SECURE"] is False
    assert local["SECURE_HSTS_SECONDS"] == 0 and local["SECURE_PROXY_SSL_HEADER"] is None


@pytest.mark.slow
@pytest.mark.django_db
def test_a_bad_hsts_value_names_the_variable() -> None:
    code = "import django; django.setup()"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=child_env(**PRODUCTION, DJANGO_SECURE_HSTS_SECONDS="a year"),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "DJANGO_SECURE_HSTS_SECONDS" in result.stderr


def test_behind_the_proxy_http_is_redirected_and_https_gets_hsts(settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    client = Client()
    plain = client.get("/", HTTP_X_FORWARDED_PROTO="http")
    assert plain.status_code == 301 and plain["Location"] == "https://testserver/"
    secure = client.get("/", HTTP_X_FORWARDED_PROTO="https")
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"].startswith("max-age=3600")
    assert client.get("/healthz", HTTP_X_FORWARDED_PROTO="http").status_code == 200  # supervisors probe over HTTP


def test_the_nginx_template_serves_https_only_with_a_certificate_and_its_key(tmp_path: Any) -> None:
    from deploy.render_nginx import NginxConfigError, NginxSettings, render_nginx_conf

    tls = NginxSettings(
        upstreams=["127.0.0.1:8001"], tls_listen="443", tls_certificate="/etc/qq/cert.pem", tls_certificate_key="/k.pem"
    )
    conf = render_nginx_conf(tls)
    assert "listen 443 ssl;" in conf and "ssl_certificate /etc/qq/cert.pem;" in conf
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in conf
    assert " ssl;" not in render_nginx_conf(NginxSettings(upstreams=["127.0.0.1:8001"]))
    with pytest.raises(NginxConfigError, match="--tls-listen, --tls-certificate and --tls-certificate-key together"):
        render_nginx_conf(NginxSettings(upstreams=["127.0.0.1:8001"], tls_certificate="/etc/qq/cert.pem"))
