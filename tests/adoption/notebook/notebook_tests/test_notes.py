import pytest

from notebook_tests.conftest import add_note, age_note, all_note_bodies, new_notebook, notebook_of
from notes.tasks import purge_old_notes

pytestmark = pytest.mark.django_db


def test_a_user_keeps_notes_in_a_notebook(client, alice):
    client.force_login(alice)
    nb = new_notebook(client, "Ideas")
    add_note(client, nb, "first idea")
    add_note(client, nb, "second idea")
    page = client.get(f"/notebooks/{nb}/").content.decode()
    assert "first idea" in page and "second idea" in page
    assert "Ideas" in client.get("/").content.decode()


def test_the_notebook_counts_its_notes(client, alice):
    client.force_login(alice)
    nb = new_notebook(client, "Counted")
    add_note(client, nb, "one")
    add_note(client, nb, "two")
    assert notebook_of(alice).note_count == 2


def test_nobody_reads_another_users_notebook(client, alice, bob):
    client.force_login(alice)
    nb = new_notebook(client, "Private")
    client.force_login(bob)
    assert client.get(f"/notebooks/{nb}/").status_code == 404


def test_my_notes_and_search_show_only_mine(client, alice, bob):
    client.force_login(alice)
    add_note(client, new_notebook(client, "A"), "alice likes tea")
    client.force_login(bob)
    add_note(client, new_notebook(client, "B"), "bob likes tea too")
    mine = client.get("/notes/").content.decode()
    assert "bob likes tea too" in mine and "alice" not in mine
    found = client.get("/search/", {"q": "tea"}).content.decode()
    assert "bob likes tea too" in found and "alice likes tea" not in found


def test_the_feed_shows_notes_of_the_people_followed(client, alice, bob):
    client.force_login(alice)
    add_note(client, new_notebook(client, "A"), "from alice")
    client.force_login(bob)
    add_note(client, new_notebook(client, "B"), "from bob")
    feed = client.get("/feed/", {"users": f"{alice.pk},{bob.pk}"}).content.decode()
    assert "from alice" in feed and "from bob" in feed


@pytest.mark.django_db(transaction=True)  # the report may read every database, each over its own connection
def test_the_staff_report_counts_notes_of_every_user(client, alice, bob, staff):
    for user, count in ((alice, 2), (bob, 1)):
        client.force_login(user)
        nb = new_notebook(client, "N")
        for i in range(count):
            add_note(client, nb, f"note {i}")
    client.force_login(staff)
    report = client.get("/staff/report/").json()["notes_per_user"]
    assert report == {str(alice.pk): 2, str(bob.pk): 1}


@pytest.mark.django_db(transaction=True)
def test_purging_removes_only_old_notes(client, alice, bob):
    for user in (alice, bob):
        client.force_login(user)
        nb = new_notebook(client, "N")
        old = add_note(client, nb, "old")
        add_note(client, nb, "new")
        age_note(user, old, days=400)
    assert purge_old_notes.delay().get() == 2
    assert all_note_bodies() == ["new", "new"]
