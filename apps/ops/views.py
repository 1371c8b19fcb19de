"""The operator console: staff-only, read-only pages. Actions stay in `manage.py` (leased, logged, resumable)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from migrations_tooling import selectors as move_selectors
from migrations_tooling.errors import MoveError
from shardrouter.errors import ShardMapError
from shardrouter.mapstore import load_map_from_database
from shardrouter.selectors import shardmap_advise

from . import selectors

View = Callable[..., HttpResponse]


def staff_required(view: View) -> View:
    """Anonymous users go to the login page; signed-in users who are not staff get 403."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not request.user.is_staff:
            raise PermissionDenied("The operator console is for staff accounts.")
        return view(request, *args, **kwargs)

    return wrapped


@require_GET
@staff_required
def shard_map(request: HttpRequest) -> HttpResponse:
    current = load_map_from_database()
    moves = move_selectors.move_list(active_only=True)
    loads = selectors.shard_loads(current, [m.target for m in moves])
    palette = {load.alias: load.colour for load in loads}
    context = {
        "map": current,
        "bars": selectors.map_bars(current, palette),
        "loads": loads,
        "history": selectors.map_history(),
        "moves": moves,
    }
    return render(request, "ops/map.html", context)


@require_GET
@staff_required
def advice(request: HttpRequest) -> HttpResponse:
    by = request.GET.get("by", "rows")
    if by not in ("rows", "bytes", "writes"):
        return render(request, "ops/advice.html", {"error": "by must be rows, bytes or writes."}, status=400)
    try:
        result = shardmap_advise(shards=None, by=by)
    except ShardMapError as exc:
        return render(request, "ops/advice.html", {"error": str(exc), "by": by}, status=400)
    return render(request, "ops/advice.html", {"advice": result, "json": result.to_json(), "by": by})


@require_GET
@staff_required
def move_list(request: HttpRequest) -> HttpResponse:
    return render(request, "ops/moves.html", {"moves": move_selectors.move_list()})


def _page(move_id: int) -> selectors.MovePage:
    try:
        move = move_selectors.move_get(move_id)
    except MoveError:
        raise Http404(f"There is no move {move_id}.") from None
    return selectors.move_page(move)


@require_GET
@staff_required
def move_detail(request: HttpRequest, move_id: int) -> HttpResponse:
    return render(request, "ops/move.html", {"page": _page(move_id)})


@require_GET
@staff_required
def move_live(request: HttpRequest, move_id: int) -> HttpResponse:
    """The live part of the move page, fetched every few seconds while the move runs."""
    return render(request, "ops/_move_live.html", {"page": _page(move_id)})
