"""Writes of exports: render a generation once per version, store it privately, record it on the owner's shard."""

from __future__ import annotations

import logging

from django.core.files.base import ContentFile
from django.core.files.storage import storages
from django.utils import timezone

from apps.content.selectors import generation_get
from shardrouter.writes import run_sharded_write

from .documents import document_from_generation, document_version, export_format_get
from .models import Export

logger = logging.getLogger(__name__)

EXPORTS_STORAGE = "default"


class _Upload(ContentFile):
    """Bytes with the Content-Type the S3 backend stores them under."""

    def __init__(self, body: bytes, *, name: str, content_type: str) -> None:
        super().__init__(body, name=name)
        self.content_type = content_type


def export_key(*, user_id: int, generation_id: int, version: str, extension: str) -> str:
    """``exports/<user>/<generation>/<version>/generation-<id>.<ext>``: versioned, and downloads under a plain name."""
    return f"exports/{user_id}/{generation_id}/{version}/generation-{generation_id}.{extension}"


def export_create(*, user_id: int, generation_id: int, fmt: str) -> Export:
    """Export the user's generation as ``fmt``; reuse the stored file when this version was exported before.

    Raises ``UnknownExportFormat`` and ``Generation.DoesNotExist`` (also for
    someone else's generation). The file is stored before the row is written,
    so a row never points at a missing file.
    """
    export_format = export_format_get(fmt)
    generation = generation_get(user_id=user_id, generation_id=generation_id)
    document = document_from_generation(generation)
    version = document_version(document, export_format)
    key = export_key(user_id=user_id, generation_id=generation_id, version=version, extension=export_format.extension)
    storage = storages[EXPORTS_STORAGE]
    if storage.exists(key):
        size = storage.size(key)
    else:
        body = export_format.render(document)
        upload = _Upload(body, name=key.rsplit("/", 1)[-1], content_type=export_format.content_type)
        key = storage.save(key, upload)
        size = len(body)

    def work() -> Export:
        export, _created = Export.objects.for_user(user_id).update_or_create(
            user_id=user_id,
            generation_id=generation_id,
            format=export_format.code,
            version=version,
            defaults={"storage_key": key, "size_bytes": size, "requested_at": timezone.now()},
        )
        return export

    return run_sharded_write(user_id=user_id, work=work)


def exports_delete_rows(*, user_id: int, generation_id: int) -> list[str]:
    """Delete the export rows of one generation (inside the caller's sharded write); their storage keys."""
    exports = Export.objects.for_user(user_id).filter(generation_id=generation_id)
    keys = list(exports.values_list("storage_key", flat=True))
    exports.delete()
    return keys


def export_files_delete(*, user_id: int, generation_id: int, keys: list[str]) -> int:
    """Remove a deleted generation's files: the recorded keys and anything else under its folder."""
    storage = storages[EXPORTS_STORAGE]
    folder = f"exports/{user_id}/{generation_id}"
    found = set(keys)
    try:
        versions, _ = storage.listdir(folder)
        for version in versions:
            _, names = storage.listdir(f"{folder}/{version}")
            found.update(f"{folder}/{version}/{name}" for name in names)
    except FileNotFoundError:
        pass
    for key in sorted(found):
        storage.delete(key)
    if found:
        logger.info("Deleted %d export files of generation %s", len(found), generation_id)
    return len(found)
