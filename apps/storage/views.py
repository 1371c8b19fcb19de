"""Serves local media through signed links (``QQ_STORAGE=local``); with S3 the bucket does this itself."""

from __future__ import annotations

import mimetypes
import posixpath

from django.core.files.storage import storages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.http import require_GET

from .backends import SignedLocalMediaStorage, attachment_disposition
from .links import MediaLinkExpired, MediaLinkForged, media_link_verify


@require_GET
def media_file_view(request: HttpRequest, name: str) -> HttpResponse | FileResponse:
    storage = storages["default"]
    if not isinstance(storage, SignedLocalMediaStorage):
        raise Http404("Media is not served by the app.")
    try:
        remaining = media_link_verify(
            name=name, expires=request.GET.get("expires", ""), signature=request.GET.get("signature", "")
        )
    except MediaLinkExpired:
        return HttpResponseForbidden("This link has expired. Go back and ask for a new one.", content_type="text/plain")
    except MediaLinkForged:
        return HttpResponseForbidden("This link is not valid.", content_type="text/plain")
    try:
        handle = storage.open(name, "rb")
    except FileNotFoundError:
        raise Http404("No such file.") from None
    content_type, _ = mimetypes.guess_type(posixpath.basename(name))
    response = FileResponse(handle, content_type=content_type or "application/octet-stream")
    response["Content-Disposition"] = attachment_disposition(name)
    response["Cache-Control"] = f"private, max-age={remaining}"
    return response
