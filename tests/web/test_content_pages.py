"""The content pages: a user sees, opens and deletes only their own generations."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from apps.content.models import Generation
from apps.content.services import generation_create
from tests.conftest import ALL_DATABASES, raw_rows
from tests.support.users import logged_in

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)


def test_creating_a_generation_stores_it_queued_on_the_users_shard(bob: Any) -> None:
    client = logged_in(bob)
    response = client.post(
        reverse("content:create"),
        {
            "prompt": "Write a haiku about shards",
            "max_tokens": 50,
            "temperature": 0.7,
            "top_p": 0.9,
            "seed": 7,
            "stop": "END\n",
        },
    )
    assert response.status_code == 302
    rows = raw_rows("shard2", "SELECT user_id, prompt, status, max_tokens, seed, stop::text FROM content_generation")
    assert rows == [(1010, "Write a haiku about shards", "queued", 50, 7, '["END"]')]
    generation_id = raw_rows("shard2", "SELECT id FROM content_generation")[0][0]
    assert response["Location"] == reverse("content:detail", args=[generation_id])
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert b"Write a haiku about shards" in page.content
    assert b"Queued" in page.content


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("prompt", "", "This field is required"),
        ("max_tokens", "0", "greater than or equal to 1"),
        ("max_tokens", "99999", "less than or equal to 1024"),
        ("temperature", "3", "less than or equal to 2"),
        ("top_p", "0", "greater than or equal to 0.01"),
        ("stop", "a\nb\nc\nd\ne", "At most 4 stop sequences"),
    ],
)
def test_bad_input_is_answered_with_400_and_a_message_and_nothing_is_stored(
    alice: Any, field: str, value: str, message: str
) -> None:
    data = {"prompt": "ok", "max_tokens": "10", "temperature": "0.5", "top_p": "0.9", "seed": "", "stop": ""}
    data[field] = value
    response = logged_in(alice).post(reverse("content:create"), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert raw_rows("shard1", "SELECT count(*) FROM content_generation") == [(0,)]


def test_the_list_shows_only_my_generations_newest_first_with_pages(alice: Any, carol: Any) -> None:
    for n in range(25):
        generation_create(user_id=alice.id, prompt=f"alice prompt {n:02d}")
    generation_create(user_id=carol.id, prompt="carol's secret")
    client = logged_in(alice)

    first = client.get(reverse("content:list")).content.decode()
    assert "alice prompt 24" in first and "alice prompt 05" in first
    assert "alice prompt 04" not in first
    assert "carol&#x27;s secret" not in first and "carol's secret" not in first
    second = client.get(reverse("content:list") + "?page=2").content.decode()
    assert "alice prompt 04" in second and "alice prompt 00" in second
    assert "Page 2 of 2" in second


@pytest.mark.parametrize("owner_fixture", ["bob", "carol"], ids=["other-shard", "same-shard"])
def test_a_user_cannot_read_or_delete_someone_elses_generation(
    alice: Any, owner_fixture: str, request: pytest.FixtureRequest
) -> None:
    owner = request.getfixturevalue(owner_fixture)
    theirs = generation_create(user_id=owner.id, prompt="not yours")
    client = logged_in(alice)

    assert client.get(reverse("content:detail", args=[theirs.id])).status_code == 404
    assert client.get(reverse("content:delete", args=[theirs.id])).status_code == 404
    assert client.post(reverse("content:delete", args=[theirs.id])).status_code == 404
    assert Generation.objects.for_user(owner.id).filter(id=theirs.id).exists()


def test_deleting_my_generation_removes_it_from_my_shard(bob: Any) -> None:
    mine = generation_create(user_id=bob.id, prompt="short-lived")
    client = logged_in(bob)
    assert client.get(reverse("content:delete", args=[mine.id])).status_code == 200
    response = client.post(reverse("content:delete", args=[mine.id]))
    assert response.status_code == 302
    assert raw_rows("shard2", "SELECT count(*) FROM content_generation WHERE id = %s", [mine.id]) == [(0,)]


@pytest.mark.parametrize(
    "path",
    [
        "/generations/123/",
        "/generations/99999999999999999999/",
        "/generations/9223372036854775808/",
        "/generations/abc/",
    ],
)
def test_unknown_or_impossible_ids_are_404_never_500(alice: Any, path: str) -> None:
    assert logged_in(alice).get(path).status_code == 404


def test_pages_need_a_login(bob: Any) -> None:
    response = Client().get(reverse("content:list"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))
