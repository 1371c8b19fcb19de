from datetime import timedelta

import pytest
from django.utils import timezone

from notes.models import Note, Notebook
from shardrouter.scatter import scatter_gather


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="pw-alice-1", id=5)


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password="pw-bob-1", id=1500)


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("carol", password="pw-carol-1", id=42, is_staff=True)


def new_notebook(client, title):
    response = client.post("/", {"title": title})
    assert response.status_code == 302
    return int(response["Location"].strip("/").split("/")[-1])


def add_note(client, notebook_id, body):
    response = client.post(f"/notebooks/{notebook_id}/add/", {"body": body})
    assert response.status_code == 201, response.content
    return response.json()["id"]


def notebook_of(user):
    return Notebook.objects.for_user(user.pk).get()


def age_note(user, note_id, days):
    Note.objects.for_user(user.pk).filter(pk=note_id).update(created=timezone.now() - timedelta(days=days))


def all_note_bodies():
    rows, _failures = scatter_gather(Note.objects.all(), order_by=("body", "id"))
    return [n.body for n in rows]
