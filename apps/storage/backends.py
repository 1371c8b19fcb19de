"""Storage backends: hashed static files and private exports on S3, and the local stand-in for ``make run``.

Cache strategy (docs/storage-and-cdn.md): a hashed static name changes whenever
its content does, so it may be cached for a year; the unhashed originals and the
manifest keep their names across deploys, so they get a short lifetime (or none).
Media keys carry a content version, so an object never changes under its key.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from django.core.files.base import File
from django.core.files.storage import FileSystemStorage, Storage
from storages.backends.s3 import S3ManifestStaticStorage, S3Storage
from storages.utils import clean_name, is_seekable

from .links import media_link_sign

logger = logging.getLogger(__name__)

IMMUTABLE = "public, max-age=31536000, immutable"
# The manifest is read by the app through the S3 API, never through the CDN: never cache it.
MANIFEST_CACHE_CONTROL = "no-cache"
# Media keys are versioned, so their bytes never change; the signed URL, not caching, limits access.
MEDIA_CACHE_CONTROL = "max-age=31536000, immutable"

# Django's hashed names: "<root>.<12 hex digits><ext>", e.g. app.3f2a1b4c5d6e.css or LICENSE.3f2a1b4c5d6e.
_HASHED_BASENAME = re.compile(r"^.+\.[0-9a-f]{12}(\.[^.]+)?$")


def is_hashed_name(name: str) -> bool:
    """Whether ``name`` is a content-hashed static name (its content can never change)."""
    return bool(_HASHED_BASENAME.match(posixpath.basename(name)))


def attachment_disposition(name: str) -> str:
    """A Content-Disposition that downloads the object under the last part of its key."""
    filename = posixpath.basename(name).replace('"', "")
    return f'attachment; filename="{filename}"'


def content_md5(content: File) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    for chunk in content.chunks():
        digest.update(chunk if isinstance(chunk, bytes) else chunk.encode())
    content.seek(0)
    return digest.hexdigest()


@dataclass
class UploadTally:
    uploaded: int = 0
    already_current: int = 0


class StaticS3Storage(S3ManifestStaticStorage):
    """Hashed static files on S3 with long-lived caching, uploading only what changed.

    - ``Cache-Control``: hashed names are immutable for a year; unhashed
      originals get ``unhashed_max_age`` seconds; the manifest is never cached.
    - An object whose bytes and headers already match is not uploaded again
      (compared by MD5 against the object's ETag, one HEAD request).
    - Inside post-processing, Django deletes each hashed file and the manifest
      right before writing them again. On S3 a PUT replaces an object
      atomically, so those deletes are held back: a file never disappears
      from the CDN's origin mid-deploy, and an unchanged one is not re-sent.
    """

    def __init__(self, **settings: Any) -> None:
        self._replacing = False
        self._held_deletes: set[str] = set()
        self.tally = UploadTally()
        super().__init__(**settings)

    def get_default_settings(self) -> dict[str, Any]:
        return {**super().get_default_settings(), "unhashed_max_age": 300}

    def cache_control_for(self, key: str) -> str:
        if key == self._normalize_name(self.manifest_name):
            return MANIFEST_CACHE_CONTROL
        if is_hashed_name(key):
            return IMMUTABLE
        return f"public, max-age={self.unhashed_max_age}"

    def get_object_parameters(self, name: str) -> dict[str, Any]:
        params: dict[str, Any] = super().get_object_parameters(name)
        params.setdefault("CacheControl", self.cache_control_for(name))
        return params

    def holds_same_content(self, name: str, content: File) -> bool:
        """Whether the object stored under ``name`` already has ``content``'s bytes and the wanted headers."""
        if not is_seekable(content):
            return False
        key = self._normalize_name(clean_name(name))
        try:
            head = self.connection.meta.client.head_object(Bucket=self.bucket_name, Key=key)
        except ClientError as err:
            if err.response["ResponseMetadata"]["HTTPStatusCode"] == 404:
                return False
            raise
        wanted = self._get_write_parameters(key, content)
        return (
            head.get("ETag", "").strip('"') == content_md5(content)
            and head.get("CacheControl") == wanted.get("CacheControl")
            and head.get("ContentType") == wanted.get("ContentType")
            and head.get("ContentEncoding") == wanted.get("ContentEncoding")
        )

    def _save(self, name: str, content: File) -> str:
        key = self._normalize_name(clean_name(name))
        self._held_deletes.discard(key)
        if self.holds_same_content(name, content):
            self.tally.already_current += 1
            return clean_name(name)
        self.tally.uploaded += 1
        return str(super()._save(name, content))

    def delete(self, name: str) -> None:
        if self._replacing:
            self._held_deletes.add(self._normalize_name(clean_name(name)))
            return
        super().delete(name)

    def exists(self, name: str) -> bool:
        if self._normalize_name(clean_name(name)) in self._held_deletes:
            return False
        return bool(super().exists(name))

    def post_process(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        self._replacing = True
        try:
            yield from super().post_process(*args, **kwargs)
        finally:
            self._replacing = False
            held, self._held_deletes = self._held_deletes, set()
        # Only after a complete run: a run that failed halfway leaves every object as it was.
        for key in sorted(held):  # deleted and never written again: really delete
            self.bucket.Object(key).delete()
        logger.info(
            "Static files in s3://%s/%s: %d uploaded, %d already current.",
            self.bucket_name,
            self.location,
            self.tally.uploaded,
            self.tally.already_current,
        )


class PrivateMediaS3Storage(S3Storage):
    """Private media (exported documents): no public URL, only short-lived signed ones.

    ``url()`` returns an S3 presigned URL, or a CloudFront signed URL when a
    media CDN domain and a CloudFront key are configured. Objects download
    under the last part of their key.
    """

    querystring_auth = True

    def get_object_parameters(self, name: str) -> dict[str, Any]:
        params: dict[str, Any] = super().get_object_parameters(name)
        params.setdefault("ContentDisposition", attachment_disposition(name))
        params.setdefault("CacheControl", MEDIA_CACHE_CONTROL)
        return params


class SignedLocalMediaStorage(FileSystemStorage):
    """Media on this machine, reached like private S3 objects: through links that are signed and expire.

    Used by ``make run`` and the tests; ``apps.storage.views.media_file_view``
    checks the signature and the expiry before serving a file.
    """

    def __init__(self, *, querystring_expire: int = 300, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.querystring_expire = querystring_expire

    def url(self, name: str | None, parameters: dict[str, Any] | None = None, expire: int | None = None) -> str:
        if name is None:
            raise ValueError("A file name is required to sign a link.")
        return media_link_sign(name=clean_name(name), expire_seconds=expire or self.querystring_expire)


def signs_private_links(storage: Storage) -> bool:
    """Whether ``storage.url()`` hands out signed, expiring links (the only kind exports may use)."""
    if isinstance(storage, SignedLocalMediaStorage):
        return True
    if not isinstance(storage, S3Storage) or not storage.querystring_auth:
        return False
    # Behind a custom (CDN) domain, django-storages signs only when it has a CloudFront key.
    return not storage.custom_domain or bool(storage.cloudfront_signer)
