"""Exports: a private, versioned file in the media bucket, reachable only through short-lived signed links.

Media storage is the S3 backend configured exactly as settings.py configures
it from the environment, talking HTTP to the test S3 server.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlsplit

import botocore.auth
import pytest
from django.test import Client, override_settings
from django.urls import reverse

from apps.content.models import Generation
from apps.content.services import generation_create
from tests.conftest import ALL_DATABASES, raw_rows
from tests.support.users import logged_in

from .conftest import Buckets, S3Server, object_versions, s3_media_settings

pytestmark = [pytest.mark.django_db(databases=ALL_DATABASES), pytest.mark.slow]


@pytest.fixture
def poem(alice: Any) -> Generation:
    generation = generation_create(user_id=alice.pk, prompt="Write a poem about quills\nKeep it short", seed=7)
    Generation.objects.for_user(alice.pk).filter(id=generation.id).update(
        status=Generation.Status.SUCCEEDED, output="A quill at rest,\nits ink not yet dry.", completion_tokens=11
    )
    return generation


@pytest.fixture
def media_on_s3(s3_server: S3Server, buckets: Buckets) -> Iterator[Buckets]:
    with override_settings(**s3_media_settings(s3_server, buckets)):
        yield buckets


def export_url(generation_id: int, fmt: str) -> str:
    return reverse("exports:export", args=[generation_id, fmt])


def signed_link(client: Client, generation_id: int, fmt: str) -> str:
    """Ask for an export as the page's button does, and follow the app's redirect to the signed link."""
    created = client.post(export_url(generation_id, fmt))
    assert created.status_code == 302 and created["Location"] == export_url(generation_id, fmt)
    link = client.get(created["Location"])
    assert link.status_code == 302
    assert "no-cache" in link["Cache-Control"]
    return str(link["Location"])


def fetch(url: str) -> tuple[int, Message, bytes]:
    """GET ``url`` as a browser would, with no credentials of any kind."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def media_keys(server: S3Server, bucket: str) -> list[str]:
    return sorted(item["Key"] for item in server.client().list_objects_v2(Bucket=bucket).get("Contents", []))


def test_a_pdf_export_lands_privately_in_the_media_bucket_under_a_versioned_key(
    s3_server: S3Server, media_on_s3: Buckets, alice: Any, poem: Generation
) -> None:
    link = signed_link(logged_in(alice), poem.id, "pdf")

    [key] = media_keys(s3_server, media_on_s3.media)
    assert re.fullmatch(rf"exports/10/{poem.id}/[0-9a-f]{{20}}/generation-{poem.id}\.pdf", key)
    assert link.startswith(f"{s3_server.endpoint_url}/{media_on_s3.media}/{key}?")
    assert parse_qs(urlsplit(link).query)["X-Amz-Expires"] == ["300"]
    status, headers, body = fetch(link)
    assert status == 200
    assert body.startswith(b"%PDF-") and body.rstrip().endswith(b"%%EOF")
    assert headers["Content-Type"] == "application/pdf"
    assert headers["Content-Disposition"] == f'attachment; filename="generation-{poem.id}.pdf"'
    # Without a signature the bucket refuses the same object.
    assert fetch(f"{s3_server.endpoint_url}/{media_on_s3.media}/{key}")[0] == 403
    assert raw_rows("shard1", "SELECT user_id, generation_id, format, storage_key FROM exports_export") == [
        (10, poem.id, "pdf", key)
    ]
    assert raw_rows("shard2", "SELECT count(*) FROM exports_export") == [(0,)]


def test_a_markdown_export_holds_the_prompt_the_output_and_the_settings(
    s3_server: S3Server, media_on_s3: Buckets, alice: Any, poem: Generation
) -> None:
    status, headers, body = fetch(signed_link(logged_in(alice), poem.id, "md"))

    assert status == 200
    assert headers["Content-Type"] == "text/markdown; charset=utf-8"
    text = body.decode()
    assert text.startswith("# Write a poem about quills\n")
    assert "> Write a poem about quills\n> Keep it short\n" in text
    assert "## Output\n\nA quill at rest,\nits ink not yet dry.\n" in text
    assert "- **Seed:** 7" in text and "- **Status:** Succeeded" in text


def test_a_signed_link_stops_working_once_its_lifetime_is_over_and_cannot_be_altered(
    s3_server: S3Server, buckets: Buckets, alice: Any, poem: Generation, monkeypatch: pytest.MonkeyPatch
) -> None:
    with override_settings(**s3_media_settings(s3_server, buckets, QQ_MEDIA_URL_EXPIRE_SECONDS="5")):
        link = signed_link(logged_in(alice), poem.id, "md")
        assert fetch(link)[0] == 200
        assert fetch(link.replace("X-Amz-Expires=5", "X-Amz-Expires=600"))[0] == 403
        # The same link as the app signs it, signed ten seconds ago (now= for the signer's clock): its
        # five-second lifetime is over, and S3 says so.
        ten_seconds_ago = datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=10)
        with monkeypatch.context() as signer:
            signer.setattr(botocore.auth, "get_current_datetime", lambda remove_tzinfo=True: ten_seconds_ago)
            stale = signed_link(logged_in(alice), poem.id, "md")
        assert urlsplit(stale).path == urlsplit(link).path
        status, _headers, body = fetch(stale)
        assert status == 403 and b"Request has expired" in body
        # The app hands out a fresh link to the same file.
        assert fetch(str(logged_in(alice).get(export_url(poem.id, "md"))["Location"]))[0] == 200


def test_exporting_unchanged_content_again_reuses_the_file_and_a_changed_generation_gets_a_new_key(
    s3_server: S3Server, media_on_s3: Buckets, alice: Any, poem: Generation
) -> None:
    client = logged_in(alice)
    first = signed_link(client, poem.id, "md")
    second = signed_link(client, poem.id, "md")
    [first_key] = media_keys(s3_server, media_on_s3.media)
    assert object_versions(s3_server, media_on_s3.media) == {first_key: 1}
    assert urlsplit(first).path == urlsplit(second).path

    Generation.objects.for_user(alice.pk).filter(id=poem.id).update(output="A quill at rest, revised.")
    third = signed_link(client, poem.id, "md")

    keys = media_keys(s3_server, media_on_s3.media)
    assert len(keys) == 2 and first_key in keys
    assert fetch(third)[2].decode().endswith("## Output\n\nA quill at rest, revised.\n")
    # The earlier file is untouched: whoever holds its link (or a cache) still gets exactly what they had.
    assert b"its ink not yet dry" in fetch(first)[2]
    assert raw_rows("shard1", "SELECT count(*) FROM exports_export") == [(2,)]


def test_another_user_gets_404_for_both_the_export_and_the_link(
    s3_server: S3Server, media_on_s3: Buckets, alice: Any, bob: Any, poem: Generation
) -> None:
    signed_link(logged_in(alice), poem.id, "pdf")
    intruder = logged_in(bob)

    assert intruder.post(export_url(poem.id, "pdf")).status_code == 404
    assert intruder.get(export_url(poem.id, "pdf")).status_code == 404
    assert intruder.post(export_url(poem.id, "md")).status_code == 404
    assert len(media_keys(s3_server, media_on_s3.media)) == 1
    assert raw_rows("shard2", "SELECT count(*) FROM exports_export") == [(0,)]


def test_unknown_generations_formats_and_not_yet_exported_links_are_404(
    media_on_s3: Buckets, alice: Any, poem: Generation
) -> None:
    client = logged_in(alice)
    assert client.post(export_url(poem.id + 1, "pdf")).status_code == 404
    assert client.get(export_url(poem.id + 1, "pdf")).status_code == 404
    assert client.post(export_url(poem.id, "docx")).status_code == 404
    assert client.get(export_url(poem.id, "pdf")).status_code == 404  # never exported yet
    assert client.get(f"/generations/{2**64}/export/pdf/").status_code == 404


def test_exports_need_a_login(media_on_s3: Buckets, poem: Generation) -> None:
    response = Client().post(export_url(poem.id, "pdf"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))


def test_a_file_store_that_refuses_the_upload_answers_503_with_retry_after(
    s3_server: S3Server, alice: Any, poem: Generation
) -> None:
    missing = Buckets(static="qq-static-missing", media="qq-media-never-created")
    with override_settings(**s3_media_settings(s3_server, missing)):
        response = logged_in(alice).post(export_url(poem.id, "pdf"))
    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    assert raw_rows("shard1", "SELECT count(*) FROM exports_export") == [(0,)]


def test_the_generation_page_offers_the_exports(alice: Any, poem: Generation) -> None:
    page = logged_in(alice).get(reverse("content:detail", args=[poem.id])).content.decode()
    assert f'action="{export_url(poem.id, "pdf")}"' in page
    assert f'action="{export_url(poem.id, "md")}"' in page
