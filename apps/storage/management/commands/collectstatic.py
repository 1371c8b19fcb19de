"""collectstatic that compares content, not modification times, with storages that can.

The stock command re-uploads every original whose source file is newer than
the stored copy, which after a fresh checkout (every CI deploy) is all of them,
and skips a changed file whose source is older (a rollback).
Storages with ``holds_same_content`` (``StaticS3Storage``) are asked instead,
so a deploy uploads only what changed. Other storages behave as before.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.contrib.staticfiles.management.commands import collectstatic
from django.core.files.storage import Storage
from django.core.management.base import CommandError


class Command(collectstatic.Command):
    help = collectstatic.Command.help + " Files already stored with the same content are not uploaded again."

    def handle(self, **options: Any) -> str | None:
        try:
            return super().handle(**options)
        except (BotoCoreError, ClientError) as exc:
            bucket = getattr(self.storage, "bucket_name", "?")
            raise CommandError(
                f"The static files storage (bucket {bucket!r}) refused the upload: {exc}. Check "
                "AWS_STORAGE_BUCKET_NAME, AWS_S3_REGION_NAME, AWS_S3_ENDPOINT_URL and that the credentials may "
                "s3:ListBucket, s3:GetObject and s3:PutObject on it (docs/storage-and-cdn.md)."
            ) from exc

    def delete_file(self, path: str, prefixed_path: str, source_storage: Storage) -> bool:
        holds_same_content: Any = getattr(self.storage, "holds_same_content", None)
        if holds_same_content is not None and not self.symlink:
            with source_storage.open(path) as source_file:
                unchanged = bool(holds_same_content(prefixed_path, source_file))
            if unchanged:
                if prefixed_path not in self.unmodified_files:
                    self.unmodified_files.append(prefixed_path)
                self.log(f"Skipping '{path}' (same content already stored)")
                return False
            # Different or missing: upload whatever the times say (a rollback has older sources).
            # No delete first: a PUT replaces the object atomically.
            return True
        return bool(super().delete_file(path, prefixed_path, source_storage))
