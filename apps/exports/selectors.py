"""Reads of exports, always scoped to one user, and the signed links that hand a file out."""

from __future__ import annotations

from django.core.files.storage import storages

from .models import Export
from .services import EXPORTS_STORAGE


def export_latest(*, user_id: int, generation_id: int, fmt: str) -> Export:
    """The user's most recently requested export of a generation in ``fmt``; raises Export.DoesNotExist."""
    return Export.objects.for_user(user_id).filter(generation_id=generation_id, format=fmt).latest("requested_at", "id")


def export_link(*, export: Export) -> str:
    """A short-lived signed URL to the export's file (S3 presigned, CloudFront signed, or a local signed link)."""
    return str(storages[EXPORTS_STORAGE].url(export.storage_key))
