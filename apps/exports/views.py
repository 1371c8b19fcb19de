from __future__ import annotations

import logging

from botocore.exceptions import BotoCoreError, ClientError
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from apps.content.models import Generation
from apps.content.selectors import generation_get
from apps.platform.responses import unavailable_response

from .documents import UnknownExportFormat, export_format_get
from .models import Export
from .selectors import export_latest, export_link
from .services import export_create

logger = logging.getLogger(__name__)

# The file store not answering: S3 (or the local disk) failures, as opposed to a missing row.
STORAGE_ERRORS = (BotoCoreError, ClientError, OSError)


def _owner_id(request: HttpRequest) -> int:
    if request.user.pk is None:  # login_required has run; this only narrows the type
        raise PermissionDenied
    return int(request.user.pk)


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def export_view(request: HttpRequest, generation_id: int, fmt: str) -> HttpResponse:
    """POST: export the generation now (or reuse the same version). GET: a fresh signed link to the latest export."""
    user_id = _owner_id(request)
    try:
        export_format_get(fmt)
    except UnknownExportFormat as exc:
        raise Http404(str(exc)) from None
    try:
        if request.method == "POST":
            export_create(user_id=user_id, generation_id=generation_id, fmt=fmt)
            return redirect("exports:export", generation_id=generation_id, fmt=fmt)
        generation_get(user_id=user_id, generation_id=generation_id)
        export = export_latest(user_id=user_id, generation_id=generation_id, fmt=fmt)
        return redirect(export_link(export=export))
    except Generation.DoesNotExist:
        raise Http404("No such generation.") from None
    except Export.DoesNotExist:
        raise Http404("This generation has not been exported in that format yet.") from None
    except STORAGE_ERRORS as exc:
        logger.warning("File storage failed for %s %s: %s", request.method, request.path, exc)
        return unavailable_response(request, template="exports/storage_unavailable.html")
