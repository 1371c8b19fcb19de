from django.contrib.auth.decorators import login_required, user_passes_test
from django.db import connection
from django.db.models import Count
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils.html import escape
from django.views.decorators.http import require_POST

from notes.models import Note, Notebook


def page(title, items):
    rows = "".join(f"<li>{escape(item)}</li>" for item in items)
    return HttpResponse(f"<!doctype html><title>{escape(title)}</title><h1>{escape(title)}</h1><ul>{rows}</ul>")


@login_required
def home(request):
    if request.method == "POST":
        notebook = Notebook.objects.create(owner=request.user, title=request.POST["title"])
        return redirect(f"/notebooks/{notebook.pk}/")
    return page("Notebooks", [nb.title for nb in Notebook.objects.filter(owner=request.user).order_by("id")])


@login_required
def notebook(request, pk):
    nb = get_object_or_404(Notebook, pk=pk, owner=request.user)
    notes = Note.objects.filter(notebook_id=nb.pk).order_by("id")
    return page(nb.title, [n.body for n in notes])


@login_required
@require_POST
def add_note(request, pk):
    nb = get_object_or_404(Notebook, pk=pk, owner=request.user)
    note = Note(notebook=nb, author=request.user, body=request.POST["body"])
    note.save()
    return JsonResponse({"id": note.pk}, status=201)


@login_required
def my_notes(request):
    notes = Note.objects.filter(author=request.user).select_related("author").order_by("id")
    return page("My notes", [f"{n.author.username}: {n.body}" for n in notes])


@login_required
def search(request):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT body FROM notes_note WHERE author_id = %s AND body ILIKE %s ORDER BY id",
            [request.user.pk, "%" + request.GET.get("q", "") + "%"],
        )
        bodies = [row[0] for row in cursor.fetchall()]
    return page("Search", bodies)


@login_required
def feed(request):
    people = [int(x) for x in request.GET.get("users", "").split(",") if x]
    notes = Note.objects.filter(author_id__in=people).order_by("-id")[:20]
    return page("Feed", [n.body for n in notes])


@user_passes_test(lambda u: u.is_staff)
def report(request):
    per_user = Note.objects.values("author_id").annotate(n=Count("id")).order_by("author_id")
    return JsonResponse({"notes_per_user": {str(r["author_id"]): r["n"] for r in per_user}})
