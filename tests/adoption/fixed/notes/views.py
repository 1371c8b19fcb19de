import heapq

from django.contrib.auth.decorators import login_required, user_passes_test
from django.db.models import Count
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils.html import escape
from django.views.decorators.http import require_POST

from notes.models import Note, Notebook
from shardrouter.scatter import scatter
from shardrouter.writes import run_sharded_write


def page(title, items):
    rows = "".join(f"<li>{escape(item)}</li>" for item in items)
    return HttpResponse(f"<!doctype html><title>{escape(title)}</title><h1>{escape(title)}</h1><ul>{rows}</ul>")


@login_required
def home(request):
    uid = request.user.pk
    if request.method == "POST":
        title = request.POST["title"]
        # run_sharded_write holds and retries the write while a live move cuts the user's range over.
        notebook = run_sharded_write(user_id=uid, work=lambda: Notebook.objects.create(user_id=uid, title=title))
        return redirect(f"/notebooks/{notebook.pk}/")
    return page("Notebooks", [nb.title for nb in Notebook.objects.for_user(uid).order_by("id")])


@login_required
def notebook(request, pk):
    uid = request.user.pk
    nb = get_object_or_404(Notebook.objects.for_user(uid), pk=pk)
    notes = Note.objects.for_user(uid).filter(notebook_id=nb.pk).order_by("id")
    return page(nb.title, [n.body for n in notes])


@login_required
@require_POST
def add_note(request, pk):
    uid = request.user.pk
    nb = get_object_or_404(Notebook.objects.for_user(uid), pk=pk)
    body = request.POST["body"]
    note = run_sharded_write(user_id=uid, work=lambda: Note.objects.create(user_id=uid, notebook_id=nb.pk, body=body))
    return JsonResponse({"id": note.pk}, status=201)


@login_required
def my_notes(request):
    notes = Note.objects.for_user(request.user.pk).order_by("id")
    return page("My notes", [f"{request.user.username}: {n.body}" for n in notes])


@login_required
def search(request):
    found = Note.objects.for_user(request.user.pk).filter(body__icontains=request.GET.get("q", "")).order_by("id")
    return page("Search", [n.body for n in found])


@login_required
def feed(request):
    people = [int(x) for x in request.GET.get("users", "").split(",") if x]
    per_person = [list(Note.objects.for_user(p).order_by("-id")[:20]) for p in people]
    newest = heapq.merge(*per_person, key=lambda n: n.pk, reverse=True)
    return page("Feed", [n.body for n, _ in zip(newest, range(20), strict=False)])


@user_passes_test(lambda u: u.is_staff)
def report(request):
    counted = scatter(Note.objects.all(), lambda qs: list(qs.values("user_id").annotate(n=Count("id"))))
    per_user = {}
    for rows in counted.results.values():
        for row in rows:
            per_user[str(row["user_id"])] = per_user.get(str(row["user_id"]), 0) + row["n"]
    return JsonResponse({"notes_per_user": dict(sorted(per_user.items(), key=lambda kv: int(kv[0])))})
