"""Fixtures for the storage tests: a real S3-compatible server over HTTP on loopback, and buckets in it.

The server (``s3server.py``: moto's server plus S3's presigned-URL checks)
runs in its own process for the whole session; the app reaches it only
through ``AWS_S3_ENDPOINT_URL``, as it would reach S3. Each test gets its own
buckets (versioned, so every PUT the app makes is countable afterwards).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from apps.storage.conf import s3_storages_from_env
from quantumquill.devstack.stack import REPO_ROOT

ACCESS_KEY = "qq-test-access-key"
SECRET_KEY = "qq-test-secret-key"
REGION = "eu-west-1"
CDN_DOMAIN = "cdn.quantumquill.test"


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str

    def client(self, service: str = "s3") -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=REGION if service == "s3" else "us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def aws_env(self) -> dict[str, str]:
        """What a deployment sets to reach this server (credentials come from the environment, as in production)."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_S3_REGION_NAME": REGION,
            "AWS_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ENDPOINT_URL_CLOUDFRONT": self.endpoint_url,
            # Never ask an instance-metadata endpoint for credentials: nothing of ours is there.
            "AWS_EC2_METADATA_DISABLED": "true",
        }


@dataclass(frozen=True)
class Buckets:
    static: str
    media: str

    def env(self) -> dict[str, str]:
        return {"QQ_STORAGE": "s3", "AWS_STORAGE_BUCKET_NAME": self.static, "AWS_MEDIA_BUCKET_NAME": self.media}


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    log_path = tmp_path_factory.mktemp("s3server") / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("s3server.py")),
                "--access-key",
                ACCESS_KEY,
                "--secret-key",
                SECRET_KEY,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=REPO_ROOT,
        )
        try:
            assert process.stdout is not None
            first_line = process.stdout.readline().strip()
            if not first_line.isdigit():
                raise RuntimeError(f"The test S3 server did not start: {log_path.read_text()[-2000:]}")
            yield S3Server(f"http://127.0.0.1:{first_line}")
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 in this process finds the test credentials in the environment, and never looks elsewhere."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)


@pytest.fixture
def buckets(s3_server: S3Server) -> Buckets:
    suffix = uuid.uuid4().hex[:10]
    made = Buckets(static=f"qq-static-{suffix}", media=f"qq-media-{suffix}")
    client = s3_server.client()
    for name in (made.static, made.media):
        client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
        client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return made


def s3_settings(server: S3Server, buckets: Buckets, **extra_env: str) -> dict[str, Any]:
    """STORAGES and STATIC_URL exactly as settings.py builds them from this environment."""
    environ = {**server.aws_env(), **buckets.env(), "QQ_CDN_DOMAIN": CDN_DOMAIN, **extra_env}
    expire = int(environ.get("QQ_MEDIA_URL_EXPIRE_SECONDS", "300"))
    storages, static_url = s3_storages_from_env(environ, expire_seconds=expire)
    return {"STORAGES": storages, "STATIC_URL": static_url}


def s3_media_settings(server: S3Server, buckets: Buckets, **extra_env: str) -> dict[str, Any]:
    """Media on S3 as settings.py configures it; static files stay as they are (no collectstatic needed)."""
    from django.conf import settings

    storages = s3_settings(server, buckets, **extra_env)["STORAGES"]
    return {"STORAGES": {"default": storages["default"], "staticfiles": settings.STORAGES["staticfiles"]}}


def object_versions(server: S3Server, bucket: str) -> dict[str, int]:
    """How many times each key was written (the buckets are versioned: one version per PUT)."""
    counts: dict[str, int] = {}
    paginator = server.client().get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=bucket):
        for version in page.get("Versions", []):
            counts[version["Key"]] = counts.get(version["Key"], 0) + 1
    return counts
