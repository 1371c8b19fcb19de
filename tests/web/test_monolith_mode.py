"""Monolith mode (the whole keyspace on the control database) is a first-class configuration, end to end."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from shardrouter.keyspace import KEYSPACE_END, ShardRange
from tests.conftest import ALL_DATABASES, raw_rows, write_map

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES, transaction=True), pytest.mark.slow]


def test_sign_up_create_list_open_and_delete_all_happen_on_the_control_database() -> None:
    write_map([ShardRange(0, KEYSPACE_END, "default")], reason="test: monolith mode")
    client = Client()
    signup = client.post(
        reverse("accounts:signup"),
        {"username": "mono", "password1": "a-long-passphrase-9", "password2": "a-long-passphrase-9"},
    )
    assert signup.status_code == 302
    created = client.post(
        reverse("content:create"), {"prompt": "all in one place", "max_tokens": 20, "temperature": 1, "top_p": 1}
    )
    assert created.status_code == 302

    rows = raw_rows("default", "SELECT id, prompt FROM content_generation")
    assert [prompt for _, prompt in rows] == ["all in one place"]
    for alias in ("shard1", "shard2", "shard3"):
        assert raw_rows(alias, "SELECT count(*) FROM content_generation") == [(0,)]

    generation_id = rows[0][0]
    assert "all in one place" in client.get(reverse("content:list")).content.decode()
    assert client.get(reverse("content:detail", args=[generation_id])).status_code == 200
    assert client.post(reverse("content:delete", args=[generation_id])).status_code == 302
    assert raw_rows("default", "SELECT count(*) FROM content_generation") == [(0,)]
