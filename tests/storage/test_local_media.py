"""Local media (``make run``): exports behave as on S3, links signed and short-lived, served by the app."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.urls import reverse

from apps.content.models import Generation
from apps.content.services import generation_create
from apps.storage.links import MediaLinkExpired, MediaLinkForged, media_link_sign, media_link_verify
from tests.conftest import ALL_DATABASES

LOCAL_BACKEND = "apps.storage.backends.SignedLocalMediaStorage"


@pytest.fixture
def local_media(tmp_path: Path) -> Iterator[Path]:
    storages = {
        "default": {"BACKEND": LOCAL_BACKEND, "OPTIONS": {"location": tmp_path, "querystring_expire": 1}},
        "staticfiles": settings.STORAGES["staticfiles"],
    }
    with override_settings(STORAGES=storages):
        yield tmp_path


def test_the_embedded_default_keeps_media_on_this_machine_behind_signed_links() -> None:
    assert settings.QQ_STORAGE == "local"
    assert settings.STORAGES["default"]["BACKEND"] == LOCAL_BACKEND
    assert "apps.storage.middleware.LocalStaticFilesMiddleware" in settings.MIDDLEWARE


def test_a_local_link_names_its_file_and_expiry_and_cannot_be_forged_or_extended() -> None:
    url = media_link_sign(name="exports/1/2/v/generation-2.md", expire_seconds=60, now=1_000_000)
    path, _, query = url.partition("?")
    assert path == "/media/exports/1/2/v/generation-2.md"
    params = dict(part.split("=", 1) for part in query.split("&"))
    assert params["expires"] == "1000060"

    verify = {"name": "exports/1/2/v/generation-2.md", "expires": "1000060", "signature": params["signature"]}
    assert media_link_verify(**verify, now=1_000_000) == 60
    with pytest.raises(MediaLinkExpired):
        media_link_verify(**verify, now=1_000_061)
    with pytest.raises(MediaLinkForged):
        media_link_verify(**{**verify, "expires": "2000000"}, now=1_000_000)
    with pytest.raises(MediaLinkForged):
        media_link_verify(**{**verify, "name": "exports/1/3/v/generation-3.md"}, now=1_000_000)


@pytest.mark.slow
@pytest.mark.django_db(databases=ALL_DATABASES)
def test_a_local_export_downloads_through_its_link_until_the_link_expires(local_media: Path, make_user: Any) -> None:
    alice = make_user(10, "alice")
    generation = generation_create(user_id=alice.pk, prompt="Draft a note")
    Generation.objects.for_user(alice.pk).filter(id=generation.id).update(output="Dear reader, naïve café — 東京.")
    owner = Client()
    owner.force_login(alice)
    export_url = reverse("exports:export", args=[generation.id, "md"])

    assert owner.post(export_url).status_code == 302
    link = owner.get(export_url)["Location"]

    stranger = Client()  # a link works for whoever holds it, like a presigned URL
    download = stranger.get(link)
    assert download.status_code == 200
    assert download["Content-Disposition"] == f'attachment; filename="generation-{generation.id}.md"'
    assert "Dear reader, naïve café — 東京." in b"".join(download.streaming_content).decode()
    assert len(list(local_media.rglob("*.md"))) == 1

    assert stranger.get(link.replace("signature=", "signature=x")).status_code == 403
    assert stranger.get(link.split("?")[0]).status_code == 403
    # The same file's link as the storage signs it, signed (now=) ten seconds ago: its lifetime is over.
    name = unquote(urlsplit(link).path).removeprefix(settings.MEDIA_URL)
    stale = media_link_sign(name=name, expire_seconds=1, now=time.time() - 10)
    assert stale.split("?")[0] == link.split("?")[0]
    expired = stranger.get(stale)
    assert expired.status_code == 403 and b"expired" in expired.content
