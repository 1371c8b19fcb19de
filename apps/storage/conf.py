"""S3 storage settings read from the environment (``QQ_STORAGE=s3``), checked when settings load.

Everything a deployment could otherwise trip over on its first upload (a missing
bucket or region, a malformed endpoint or CDN domain, half a key pair) fails
here, at start-up, with ``ImproperlyConfigured`` naming the variable and the fix.
This module is imported by ``settings.py``: it must not import models.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from quantumquill.env import env_int, env_required, env_str

STATIC_BACKEND = "apps.storage.backends.StaticS3Storage"
MEDIA_BACKEND = "apps.storage.backends.PrivateMediaS3Storage"
# Static files live under this prefix, so one CDN can route /static/* to the static bucket.
STATIC_LOCATION = "static"

_HINT = "It is required with QQ_STORAGE=s3 (see docs/storage-and-cdn.md); unset QQ_STORAGE to keep files local."
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_DOMAIN_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]{1,5})?$")
_ADDRESSING_STYLES = ("virtual", "path", "auto")


def s3_storages_from_env(environ: Mapping[str, str], *, expire_seconds: int) -> tuple[dict[str, dict[str, Any]], str]:
    """Return ``(STORAGES, STATIC_URL)`` for S3, or raise ``ImproperlyConfigured`` naming the bad variable."""
    static_bucket = _bucket("AWS_STORAGE_BUCKET_NAME", environ)
    media_bucket = _bucket("AWS_MEDIA_BUCKET_NAME", environ)
    if static_bucket == media_bucket:
        raise ImproperlyConfigured(
            f"AWS_MEDIA_BUCKET_NAME and AWS_STORAGE_BUCKET_NAME are both {static_bucket!r}. Exported documents are "
            "private and the static bucket is readable through the CDN: give media a bucket of its own."
        )
    region = env_required("AWS_S3_REGION_NAME", hint=_HINT + " Example: eu-west-1.", environ=environ).strip()
    endpoint_url = _endpoint_url(environ)
    # S3-compatible servers (MinIO, Ceph, moto) generally need path-style addressing.
    addressing = env_str("AWS_S3_ADDRESSING_STYLE", "", environ=environ) or ("path" if endpoint_url else "virtual")
    if addressing not in _ADDRESSING_STYLES:
        raise ImproperlyConfigured(
            f"AWS_S3_ADDRESSING_STYLE={addressing!r} is not an addressing style; expected one of {', '.join(_ADDRESSING_STYLES)}."
        )
    _require_whole_key_pair(environ)
    cdn_domain = _domain("QQ_CDN_DOMAIN", environ) or _domain("AWS_S3_CUSTOM_DOMAIN", environ)
    media_domain = _domain("QQ_MEDIA_CDN_DOMAIN", environ)
    key_id, private_key = _cloudfront_signing_key(environ)
    if media_domain and not private_key:
        raise ImproperlyConfigured(
            f"QQ_MEDIA_CDN_DOMAIN={media_domain!r} would serve private exports, so its links must be signed: "
            "set AWS_CLOUDFRONT_KEY_ID and AWS_CLOUDFRONT_KEY_FILE (or AWS_CLOUDFRONT_KEY), "
            "or unset QQ_MEDIA_CDN_DOMAIN to use S3 presigned URLs."
        )
    if private_key and not media_domain:
        raise ImproperlyConfigured(
            "AWS_CLOUDFRONT_KEY_ID is set but QQ_MEDIA_CDN_DOMAIN is not, so the key would never be used: "
            "set QQ_MEDIA_CDN_DOMAIN to the CloudFront domain that serves exports, or unset the key variables."
        )
    unhashed_max_age = env_int("QQ_STATIC_UNHASHED_MAX_AGE", 300, minimum=0, maximum=86400, environ=environ)

    common: dict[str, Any] = {
        "region_name": region,
        "endpoint_url": endpoint_url,
        "signature_version": "s3v4",
        "addressing_style": addressing,
        # Buckets own their objects (ACLs disabled); access is decided by bucket policy alone.
        "default_acl": None,
    }
    storages = {
        "default": {
            "BACKEND": MEDIA_BACKEND,
            "OPTIONS": {
                **common,
                "bucket_name": media_bucket,
                "querystring_expire": expire_seconds,
                "custom_domain": media_domain or None,
                "cloudfront_key_id": key_id,
                "cloudfront_key": private_key,
            },
        },
        "staticfiles": {
            "BACKEND": STATIC_BACKEND,
            "OPTIONS": {
                **common,
                "bucket_name": static_bucket,
                "location": STATIC_LOCATION,
                "custom_domain": cdn_domain or None,
                "unhashed_max_age": unhashed_max_age,
            },
        },
    }
    return storages, _static_url(cdn_domain, endpoint_url, static_bucket, region)


def _bucket(name: str, environ: Mapping[str, str]) -> str:
    value = env_required(name, hint=_HINT, environ=environ).strip()
    if not _BUCKET_RE.match(value) or ".." in value:
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a valid S3 bucket name; expected 3-63 lowercase letters, digits, dots or "
            "hyphens, starting and ending with a letter or digit (for example qq-static-prod)."
        )
    return value


def _endpoint_url(environ: Mapping[str, str]) -> str | None:
    raw = (env_str("AWS_S3_ENDPOINT_URL", "", environ=environ) or "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.path not in {"", "/"}:
        raise ImproperlyConfigured(
            f"AWS_S3_ENDPOINT_URL={raw!r} is not a server address; expected http(s)://HOST[:PORT] with no path, "
            "for example https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:9000. Unset it for AWS itself."
        )
    return raw.rstrip("/")


def _domain(name: str, environ: Mapping[str, str]) -> str:
    value = (env_str(name, "", environ=environ) or "").strip()
    if value and not _DOMAIN_RE.match(value):
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a bare host name; expected something like d111111abcdef8.cloudfront.net "
            "or static.example.com, without https:// and without a path."
        )
    return value


def _require_whole_key_pair(environ: Mapping[str, str]) -> None:
    has_id = bool(environ.get("AWS_ACCESS_KEY_ID"))
    has_secret = bool(environ.get("AWS_SECRET_ACCESS_KEY"))
    if has_id != has_secret:
        missing = "AWS_SECRET_ACCESS_KEY" if has_id else "AWS_ACCESS_KEY_ID"
        raise ImproperlyConfigured(
            f"{missing} is not set but its partner is: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or neither (to use a profile, an instance or task role, or web identity)."
        )


def _cloudfront_signing_key(environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    key_id = (env_str("AWS_CLOUDFRONT_KEY_ID", "", environ=environ) or "").strip() or None
    pem = env_str("AWS_CLOUDFRONT_KEY", "", environ=environ) or ""
    path = (env_str("AWS_CLOUDFRONT_KEY_FILE", "", environ=environ) or "").strip()
    if path:
        if pem:
            raise ImproperlyConfigured("Set AWS_CLOUDFRONT_KEY_FILE or AWS_CLOUDFRONT_KEY, not both.")
        try:
            pem = Path(path).read_text()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"AWS_CLOUDFRONT_KEY_FILE={path!r} cannot be read ({exc.strerror}); it should be the PEM private key "
                "of a CloudFront key group's public key."
            ) from None
    if bool(key_id) != bool(pem):
        raise ImproperlyConfigured(
            "AWS_CLOUDFRONT_KEY_ID and AWS_CLOUDFRONT_KEY_FILE (or AWS_CLOUDFRONT_KEY) go together: "
            "the ID of the public key in CloudFront and the matching PEM private key."
        )
    if not pem:
        return None, None
    if "-----BEGIN" not in pem or "PRIVATE KEY-----" not in pem:
        raise ImproperlyConfigured(
            "The CloudFront signing key is not a PEM private key (-----BEGIN ... PRIVATE KEY-----)."
        )
    if importlib.util.find_spec("cryptography") is None and importlib.util.find_spec("rsa") is None:
        raise ImproperlyConfigured("CloudFront signed URLs need the 'cryptography' package: pip install cryptography.")
    return key_id, pem


def _static_url(cdn_domain: str, endpoint_url: str | None, bucket: str, region: str) -> str:
    if cdn_domain:
        return f"https://{cdn_domain}/{STATIC_LOCATION}/"
    if endpoint_url:
        return f"{endpoint_url}/{bucket}/{STATIC_LOCATION}/"
    return f"https://{bucket}.s3.{region}.amazonaws.com/{STATIC_LOCATION}/"


def s3_credentials_problem(storages: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Why the S3 storages in ``storages`` could not authenticate, or None when they can.

    Uses boto3's own credential chain (environment, profile files, container and
    instance roles), exactly as the storages will, so a deployment that forgot
    its credentials stops at start-up instead of answering 500 on the first upload.
    """
    from django.utils.module_loading import import_string
    from storages.backends.s3 import S3Storage

    needs_chain = False
    for config in storages.values():
        backend = import_string(config["BACKEND"])
        if not (isinstance(backend, type) and issubclass(backend, S3Storage)):
            continue
        options = config.get("OPTIONS", {})
        if not (options.get("access_key") and options.get("secret_key")) and not options.get("session_profile"):
            needs_chain = True
    if not needs_chain:
        return None

    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        credentials = boto3.Session().get_credentials()
    except BotoCoreError as exc:
        return f"boto3 could not load AWS credentials: {exc}"
    if credentials is None:
        return (
            "QQ_STORAGE=s3 but boto3 found no AWS credentials. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE, or run with an instance/task role that may read and write both buckets."
        )
    return None
