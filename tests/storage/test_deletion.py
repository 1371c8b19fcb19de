"""Deleting removes files too: a generation takes its exports with it; an account takes everything, everywhere."""

from __future__ import annotations

from importlib import import_module
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from apps.content.models import Generation
from apps.content.services import generation_create, generation_delete
from apps.exports.models import Export
from tests.conftest import ALL_DATABASES, raw_rows

from .conftest import Buckets, S3Server
from .test_exports import fetch, logged_in, media_keys, signed_link
from .test_exports import media_on_s3 as media_on_s3

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES)
PASSWORD = "lena's long passphrase"
SHARDED_TABLES = ("content_generation", "content_usageevent", "exports_export")


@pytest.fixture
def lena(make_user: Any) -> Any:
    return make_user(20, "lena", password=PASSWORD)  # shard1


def finished(user_id: int, prompt: str) -> Generation:
    generation = generation_create(user_id=user_id, prompt=prompt, seed=1)
    Generation.objects.for_user(user_id).filter(id=generation.id).update(
        status=Generation.Status.SUCCEEDED, output=f"Text about {prompt}.", completion_tokens=4
    )
    return generation


def test_deleting_a_generation_deletes_its_export_files_and_their_links_stop_working(
    s3_server: S3Server, media_on_s3: Buckets, lena: Any
) -> None:
    doomed, kept = finished(lena.pk, "secret plans"), finished(lena.pk, "a poem")
    client = logged_in(lena)
    links = [signed_link(client, doomed.id, "pdf"), signed_link(client, doomed.id, "md")]
    kept_link = signed_link(client, kept.id, "md")
    assert all(fetch(link)[0] == 200 for link in links)

    generation_delete(user_id=lena.pk, generation_id=doomed.id)

    assert [fetch(link)[0] for link in links] == [404, 404]
    assert media_keys(s3_server, media_on_s3.media) == [
        k for k in media_keys(s3_server, media_on_s3.media) if str(kept.id) in k
    ]
    assert not [k for k in media_keys(s3_server, media_on_s3.media) if str(doomed.id) in k]
    assert raw_rows("shard1", "SELECT generation_id FROM exports_export") == [(kept.id,)]
    assert fetch(kept_link)[0] == 200
    assert client.get(f"/generations/{doomed.id}/export/pdf/").status_code == 404


def test_deleting_an_account_removes_rows_on_every_database_files_and_sessions(
    s3_server: S3Server, media_on_s3: Buckets, lena: Any, make_user: Any
) -> None:
    other = make_user(30, "milo")  # same shard: must keep everything
    mine = [finished(lena.pk, "one"), finished(lena.pk, "two")]
    theirs = finished(other.pk, "theirs")
    client = logged_in(lena)
    for generation in mine:
        signed_link(client, generation.id, "pdf")
    signed_link(logged_in(other), theirs.id, "md")
    # A copy of lena's rows on shard3, as a live move's target holds them during the copy.
    copy_rows("shard1", "shard3", user_id=lena.pk)
    assert raw_rows("shard3", "SELECT count(*) FROM content_generation WHERE user_id = 20") == [(2,)]
    # Two browsers logged in through the form (so their sessions are known), one API token.
    browsers = [Client(), Client()]
    for browser in browsers:
        assert browser.post("/accounts/login/", {"username": "lena", "password": PASSWORD}).status_code == 302
    other_session = browsers[1].cookies[settings.SESSION_COOKIE_NAME].value
    token = browsers[0].post("/accounts/account/tokens/", {"name": "ci"})
    assert token.status_code == 201

    deleted = browsers[0].post("/accounts/account/delete/", {"password": PASSWORD, "confirm": "on"})

    assert deleted.status_code == 302 and deleted["Location"] == "/"
    for alias in settings.DATABASES:
        for table in SHARDED_TABLES:
            assert raw_rows(alias, f"SELECT count(*) FROM {table} WHERE user_id = 20") == [(0,)], (alias, table)
    assert raw_rows("default", "SELECT count(*) FROM auth_user WHERE id = 20") == [(0,)]
    assert raw_rows("default", "SELECT count(*) FROM security_apitoken WHERE user_id = 20") == [(0,)]
    remaining = media_keys(s3_server, media_on_s3.media)
    assert remaining and all(key.startswith("exports/30/") for key in remaining)
    store = import_module(settings.SESSION_ENGINE).SessionStore
    assert not store().exists(other_session)
    assert browsers[1].get("/generations/").status_code == 302  # to the login page
    assert raw_rows("shard1", "SELECT count(*) FROM content_generation WHERE user_id = 30") == [(1,)]
    assert Export.objects.for_user(other.pk).count() == 1


def test_deleting_an_account_needs_the_password(lena: Any) -> None:
    finished(lena.pk, "keep me")
    client = logged_in(lena)
    refused = client.post("/accounts/account/delete/", {"password": "wrong", "confirm": "on"})
    assert refused.status_code == 400
    assert b"That is not your password." in refused.content
    assert raw_rows("shard1", "SELECT count(*) FROM content_generation WHERE user_id = 20") == [(1,)]


def test_changing_the_password_ends_every_other_session_and_keeps_this_one(lena: Any) -> None:
    here, elsewhere = Client(), Client()
    for browser in (here, elsewhere):
        assert browser.post("/accounts/login/", {"username": "lena", "password": PASSWORD}).status_code == 302
    elsewhere_key = elsewhere.cookies[settings.SESSION_COOKIE_NAME].value
    changed = here.post(
        "/accounts/account/password/",
        {
            "old_password": PASSWORD,
            "new_password1": "a brand new passphrase",
            "new_password2": "a brand new passphrase",
        },
    )
    assert changed.status_code == 302
    assert here.get("/generations/").status_code == 200
    assert elsewhere.get("/generations/").status_code == 302
    assert not import_module(settings.SESSION_ENGINE).SessionStore().exists(elsewhere_key)


def copy_rows(source: str, target: str, *, user_id: int) -> None:
    """Copy one user's sharded rows between databases, as a move's initial copy does."""
    from django.db import connections
    from psycopg.types.json import Jsonb

    for table in SHARDED_TABLES:
        with connections[source].cursor() as cursor:
            cursor.execute(f"SELECT * FROM {table} WHERE user_id = %s", [user_id])
            columns = [c.name for c in cursor.description]
            rows = cursor.fetchall()
        with connections[target].cursor() as cursor:
            for row in rows:
                values = [Jsonb(v) if isinstance(v, (list, dict)) else v for v in row]
                cursor.execute(
                    f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})", values
                )
