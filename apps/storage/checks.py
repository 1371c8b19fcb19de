"""System checks for file storage (IDs storage.E001...). ``check --deploy`` also asks the buckets themselves."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.files.storage import storages
from django.utils.module_loading import import_string
from storages.backends.s3 import S3ManifestStaticStorage, S3Storage

from .backends import signs_private_links

# Longer than this, a "short-lived" link is a shareable one.
SHORT_LIVED_SECONDS = 3600


def _config(alias: str) -> dict[str, Any]:
    storages_setting: dict[str, dict[str, Any]] = settings.STORAGES
    return storages_setting.get(alias) or {}


def _backend(alias: str) -> type | None:
    config = _config(alias)
    if not config:
        return None
    backend = import_string(config["BACKEND"])
    return backend if isinstance(backend, type) else None


def _options(alias: str) -> dict[str, Any]:
    return dict(_config(alias).get("OPTIONS", {}))


def _is_s3(alias: str) -> bool:
    backend = _backend(alias)
    return backend is not None and issubclass(backend, S3Storage)


@register(Tags.staticfiles)
def check_storage_configuration(app_configs: Iterable[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if not signs_private_links(storages["default"]):
        messages.append(
            Error(
                "The default (media) storage hands out plain links, so exported documents would be readable by "
                "anyone who sees a URL.",
                hint="Use apps.storage.backends.PrivateMediaS3Storage (QQ_STORAGE=s3) or SignedLocalMediaStorage, "
                "with querystring_auth on and, behind a CDN domain, a CloudFront signing key.",
                id="storage.E001",
            )
        )
    if _is_s3("staticfiles") and not _options("staticfiles").get("custom_domain"):
        messages.append(
            Warning(
                "Static files are served straight from the S3 bucket, not through a CDN.",
                hint="Set QQ_CDN_DOMAIN to the CloudFront (or other CDN) domain in front of the static bucket.",
                id="storage.W001",
            )
        )
    expire = int(_options("default").get("querystring_expire", 0) or 0)
    if expire > SHORT_LIVED_SECONDS:
        messages.append(
            Warning(
                f"Signed links to exported documents stay valid for {expire} s; anyone they are forwarded to "
                "can download the file for that long.",
                hint=f"Keep QQ_MEDIA_URL_EXPIRE_SECONDS at {SHORT_LIVED_SECONDS} or less (default 300).",
                id="storage.W002",
            )
        )
    return messages


@register(Tags.staticfiles, deploy=True)
def check_buckets_reachable(app_configs: Iterable[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """With ``check --deploy``: every S3 bucket answers, and collectstatic has written the static manifest."""
    from botocore.exceptions import BotoCoreError, ClientError

    messages: list[CheckMessage] = []
    for alias in ("default", "staticfiles"):
        if not _is_s3(alias):
            continue
        bucket = _options(alias).get("bucket_name")
        try:
            # A manifest storage reads its manifest from the bucket as soon as it is created.
            storage = cast(S3Storage, storages[alias])
            storage.connection.meta.client.head_bucket(Bucket=storage.bucket_name)
        except (BotoCoreError, ClientError) as exc:
            messages.append(
                Error(
                    f"The {alias!r} storage cannot reach bucket {bucket!r}: {exc}",
                    hint="Check the bucket name, AWS_S3_REGION_NAME, AWS_S3_ENDPOINT_URL and that the credentials "
                    "may s3:ListBucket, s3:GetObject and s3:PutObject on it.",
                    id="storage.E010",
                )
            )
            continue
        if isinstance(storage, S3ManifestStaticStorage) and not storage.exists(storage.manifest_name):
            messages.append(
                Error(
                    f"The static manifest {storage.manifest_name!r} is not in bucket {storage.bucket_name!r}, "
                    "so every page that uses {% static %} would fail.",
                    hint="Run `manage.py collectstatic --noinput` with the same settings before starting the app.",
                    id="storage.E011",
                )
            )
    return messages
