"""Storage configuration: chosen by the environment, and wrong settings stop the app at start-up, not at upload."""

from __future__ import annotations

import base64
import os
import runpy
import subprocess
import sys
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from apps.storage.backends import PrivateMediaS3Storage
from apps.storage.checks import check_buckets_reachable, check_storage_configuration

from .conftest import CDN_DOMAIN, REPO_ROOT, Buckets, S3Server, s3_settings

VALID_S3 = {
    "QQ_STORAGE": "s3",
    "AWS_STORAGE_BUCKET_NAME": "qq-static-prod",
    "AWS_MEDIA_BUCKET_NAME": "qq-media-prod",
    "AWS_S3_REGION_NAME": "eu-west-1",
    "QQ_CDN_DOMAIN": "d111111abcdef8.cloudfront.net",
}


def load_settings(monkeypatch: pytest.MonkeyPatch, **env: str | None) -> dict[str, Any]:
    """Execute settings.py afresh with this environment, as a starting process would."""
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return runpy.run_path(str(REPO_ROOT / "quantumquill" / "settings.py"))


def test_s3_settings_put_static_on_the_cdn_and_media_in_its_own_private_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_settings(monkeypatch, **VALID_S3)
    static, media = loaded["STORAGES"]["staticfiles"], loaded["STORAGES"]["default"]
    assert static["BACKEND"] == "apps.storage.backends.StaticS3Storage"
    assert static["OPTIONS"]["bucket_name"] == "qq-static-prod"
    assert static["OPTIONS"]["custom_domain"] == "d111111abcdef8.cloudfront.net"
    assert media["BACKEND"] == "apps.storage.backends.PrivateMediaS3Storage"
    assert media["OPTIONS"]["bucket_name"] == "qq-media-prod"
    assert media["OPTIONS"]["querystring_expire"] == 300
    assert media["OPTIONS"]["custom_domain"] is None
    assert loaded["STATIC_URL"] == "https://d111111abcdef8.cloudfront.net/static/"
    assert not any("static" in name.lower() for name in loaded["MIDDLEWARE"]), "static files never touch the app"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AWS_MEDIA_BUCKET_NAME": None}, "AWS_MEDIA_BUCKET_NAME is not set"),
        ({"AWS_STORAGE_BUCKET_NAME": ""}, "AWS_STORAGE_BUCKET_NAME is not set"),
        ({"AWS_MEDIA_BUCKET_NAME": "qq-static-prod"}, "give media a bucket of its own"),
        ({"AWS_MEDIA_BUCKET_NAME": "QQ_Media"}, "not a valid S3 bucket name"),
        ({"AWS_S3_REGION_NAME": None}, "AWS_S3_REGION_NAME is not set"),
        ({"AWS_S3_ENDPOINT_URL": "127.0.0.1:9000"}, "expected http\\(s\\)://HOST\\[:PORT\\]"),
        ({"QQ_CDN_DOMAIN": "https://cdn.example.com/static"}, "not a bare host name"),
        ({"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": None}, "AWS_SECRET_ACCESS_KEY is not set but"),
        ({"QQ_MEDIA_CDN_DOMAIN": "files.example.com"}, "its links must be signed"),
        ({"AWS_CLOUDFRONT_KEY_ID": "K2JCJMDEHXQW5F"}, "go together"),
        ({"QQ_MEDIA_URL_EXPIRE_SECONDS": "604801"}, "above the maximum"),
        ({"QQ_STORAGE": "ftp"}, "expected 'local' or 's3'"),
    ],
)
def test_a_missing_or_malformed_storage_setting_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str | None], message: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        load_settings(monkeypatch, **{**VALID_S3, **env})


@pytest.mark.slow
def test_without_aws_credentials_the_app_refuses_to_start(buckets: Buckets) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        VALID_S3,
        AWS_EC2_METADATA_DISABLED="true",  # the chain must not look for an instance role here
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured: QQ_STORAGE=s3 but boto3 found no AWS credentials" in result.stderr


@pytest.mark.slow
def test_checks_flag_static_files_served_without_a_cdn_and_long_lived_links(
    s3_server: S3Server, buckets: Buckets
) -> None:
    configured = s3_settings(s3_server, buckets, QQ_CDN_DOMAIN="", QQ_MEDIA_URL_EXPIRE_SECONDS="86400")
    with override_settings(**configured):
        ids = [message.id for message in check_storage_configuration()]
    assert ids == ["storage.W001", "storage.W002"]
    with override_settings(**s3_settings(s3_server, buckets)):
        assert check_storage_configuration() == []


def test_a_media_storage_that_hands_out_plain_links_is_an_error(settings: Any) -> None:
    with override_settings(
        STORAGES={**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}}
    ):
        assert [message.id for message in check_storage_configuration()] == ["storage.E001"]


@pytest.mark.slow
def test_the_deploy_check_asks_the_buckets_and_wants_the_static_manifest(s3_server: S3Server, buckets: Buckets) -> None:
    with override_settings(**s3_settings(s3_server, Buckets(static=buckets.static, media="qq-media-never-created"))):
        messages = check_buckets_reachable()
    assert [message.id for message in messages] == ["storage.E010", "storage.E011"]
    assert "qq-media-never-created" in messages[0].msg

    s3_server.client().put_object(
        Bucket=buckets.static, Key="static/staticfiles.json", Body=b'{"version": "1.1", "paths": {}}'
    )
    with override_settings(**s3_settings(s3_server, buckets)):
        assert check_buckets_reachable() == []


@pytest.mark.slow
def test_with_a_media_cdn_domain_links_are_cloudfront_signed_and_expire(
    s3_server: S3Server, buckets: Buckets, tmp_path: Any
) -> None:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "cloudfront.pem"
    key_file.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    configured = s3_settings(
        s3_server,
        buckets,
        QQ_MEDIA_CDN_DOMAIN="files.quantumquill.test",
        AWS_CLOUDFRONT_KEY_ID="K2JCJMDEHXQW5F",
        AWS_CLOUDFRONT_KEY_FILE=str(key_file),
        QQ_MEDIA_URL_EXPIRE_SECONDS="120",
    )
    storage = PrivateMediaS3Storage(**configured["STORAGES"]["default"]["OPTIONS"])

    signed_at = time.time()
    url = storage.url("exports/10/1/abc/generation-1.pdf")

    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "files.quantumquill.test",
        "/exports/10/1/abc/generation-1.pdf",
    )
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    assert query["Key-Pair-Id"] == "K2JCJMDEHXQW5F"
    expires = int(query["Expires"])
    assert signed_at + 119 <= expires <= time.time() + 121  # the configured two-minute lifetime
    policy = (
        '{"Statement":[{"Resource":"https://files.quantumquill.test/exports/10/1/abc/generation-1.pdf",'
        f'"Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}'
    )
    signature = base64.b64decode(query["Signature"].replace("-", "+").replace("_", "=").replace("~", "/"))
    private_key.public_key().verify(signature, policy.encode(), padding.PKCS1v15(), hashes.SHA1())  # raises if forged
    assert CDN_DOMAIN not in url
