from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseForbidden
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from .forms import GenerationForm
from .models import Generation
from .selectors import generation_get, generation_list, generations_ever_requested
from .services import generation_create, generation_delete
from .streaming import generation_events, sse_response

PAGE_SIZE = 20


def _user_id(request: HttpRequest) -> int:
    # Every view below is login_required: the user is authenticated and has a primary key.
    return int(request.user.pk)  # type: ignore[arg-type]


def _get_or_404(user_id: int, generation_id: int) -> Generation:
    try:
        return generation_get(user_id=user_id, generation_id=generation_id)
    except Generation.DoesNotExist:
        raise Http404("No such generation.") from None


@login_required
def generation_list_view(request: HttpRequest) -> HttpResponse:
    user_id = _user_id(request)
    page = Paginator(generation_list(user_id=user_id), PAGE_SIZE).get_page(request.GET.get("page"))
    # An empty list after deleting everything is not the first visit: say which it is.
    had_generations = not page.object_list and generations_ever_requested(user_id=user_id)
    return render(request, "content/list.html", {"page": page, "had_generations": had_generations})


@login_required
@require_http_methods(["GET", "POST"])
def generation_create_view(request: HttpRequest) -> HttpResponse:
    form = GenerationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        generation = generation_create(
            user_id=_user_id(request),
            **form.generation_kwargs(),
            job_delay=settings.CONTENTGEN["PAGE_JOB_DELAY_SECONDS"],
        )
        # Not "queued": the page follows the status live, and a fixed message would soon be wrong.
        messages.success(request, "Generation created. Its status below updates as it runs.")
        return redirect("content:detail", generation_id=generation.id)
    return render(request, "content/form.html", {"form": form}, status=400 if form.errors else 200)


@login_required
def generation_detail_view(request: HttpRequest, generation_id: int) -> HttpResponse:
    generation = _get_or_404(_user_id(request), generation_id)
    return render(request, "content/detail.html", {"generation": generation})


@login_required
@require_http_methods(["GET", "POST"])
def generation_delete_view(request: HttpRequest, generation_id: int) -> HttpResponse:
    generation = _get_or_404(_user_id(request), generation_id)
    if request.method == "POST":
        try:
            generation_delete(user_id=_user_id(request), generation_id=generation.id)
        except Generation.DoesNotExist:
            raise Http404("No such generation.") from None
        messages.success(request, "Generation deleted.")
        return redirect("content:list")
    return render(request, "content/confirm_delete.html", {"generation": generation})


@require_GET
def generation_stream_view(request: HttpRequest, generation_id: int) -> HttpResponseBase:
    """Server-sent events of one of my generations (see apps.content.streaming)."""
    if not request.user.is_authenticated:
        # An EventSource cannot follow a redirect to the login page usefully.
        return HttpResponseForbidden("Log in to follow this generation.", content_type="text/plain")
    generation = _get_or_404(_user_id(request), generation_id)
    return sse_response(generation_events(user_id=generation.user_id, generation_id=generation.id))
