"""Pages: styled error pages in the site's layout, favicon, honest messages, exports that keep every character."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.test import Client, RequestFactory
from django.views import defaults
from markdown_it import MarkdownIt

from apps.content.models import Generation
from apps.content.services import generation_create
from apps.exports import documents
from apps.exports.documents import ExportDocument
from tests.conftest import ALL_DATABASES

HOSTILE = [
    "[click me](javascript:alert(1)) <script>alert(2)</script> <b>bold</b>",
    "# not a heading",
    "- not a list",
    "1. not a list either",
    "> not a quote",
    "**not bold** _not italic_ `not code` ~~not struck~~",
    "![not an image](http://evil.example/x.png) &amp; <https://autolink.example>",
    "```",
    "| not | a | table |",
    "===",
]
DOCUMENT = ExportDocument(
    generation_id=7,
    title=HOSTILE[0],
    status="Succeeded",
    created_at="2026-03-01T09:30:00+00:00",
    completed_at="",
    prompt="\n".join(HOSTILE),
    output="\n\n".join(HOSTILE),
    error="<img src=x onerror=alert(3)>",
    settings=(("Stop sequences", "'[x](y)', '<i>'"),),
    usage="1 prompt + 1 completion tokens",
)


@pytest.fixture
def quinn(make_user: Any) -> Any:
    return make_user(60, "quinn")


def in_layout(content: bytes) -> bool:
    return b'<header class="topbar">' in content and b'href="/static/css/app.css"' in content


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_404_403_500_and_csrf_failures_are_styled_pages_in_the_layout() -> None:
    not_found = Client().get("/no/such/page/")
    assert not_found.status_code == 404 and in_layout(not_found.content) and b"<h1>Not found</h1>" in not_found.content
    request = RequestFactory().get("/")
    forbidden = defaults.permission_denied(request, PermissionError())
    assert (
        forbidden.status_code == 403 and in_layout(forbidden.content) and b"<h1>Not allowed</h1>" in forbidden.content
    )
    error = defaults.server_error(request)
    assert error.status_code == 500 and in_layout(error.content) and b"Something went wrong" in error.content
    csrf = Client(enforce_csrf_checks=True).post("/accounts/login/", {"username": "a", "password": "b"})
    assert csrf.status_code == 403 and in_layout(csrf.content)
    assert b"Reload the page and submit it again." in csrf.content


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_api_paths_that_do_not_exist_answer_json() -> None:
    response = Client().get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_the_favicon_is_served() -> None:
    client = Client()
    response = client.get("/favicon.ico", follow=True)
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content  # type: ignore[attr-defined]
    assert body[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert b'rel="icon"' in client.get("/").content


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_the_message_after_creating_does_not_claim_a_status_that_will_change(quinn: Any) -> None:
    client = Client()
    client.force_login(quinn)
    response = client.post(
        "/generations/new/", {"prompt": "An owl", "max_tokens": 5, "temperature": 0.8, "top_p": 0.9}, follow=True
    )
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert messages == ["Generation created. Its status below updates as it runs."]
    assert not any("queued" in m.lower() for m in messages)


@pytest.mark.django_db(databases=ALL_DATABASES)
def test_after_deleting_every_generation_the_list_does_not_say_none_yet(quinn: Any) -> None:
    client = Client()
    client.force_login(quinn)
    assert b"You have no generations yet." in client.get("/generations/").content
    generation = generation_create(user_id=quinn.pk, prompt="short-lived", job_delay=None)
    assert client.post(f"/generations/{generation.id}/delete/").status_code == 302
    page = client.get("/generations/").content
    assert b"You have no generations left" in page and b"yet" not in page
    assert not Generation.objects.for_user(quinn.pk).exists()


def test_the_markdown_export_escapes_every_user_string() -> None:
    text = documents.render_markdown(DOCUMENT).decode()
    tokens = MarkdownIt("commonmark").enable("strikethrough").enable("table").parse(text)
    inline = [c.type for t in tokens for c in (t.children or [])]
    kinds = {t.type for t in tokens} | set(inline)
    forbidden = {"link_open", "image", "html_inline", "html_block", "em_open", "s_open", "code_inline", "fence"}
    assert not kinds & (forbidden | {"code_block", "ordered_list_open", "table_open"})
    assert inline.count("strong_open") == 5  # our own labels: Generation, Status, Created, Stop sequences, Usage
    # Headings and lists are only ours: the title, the two sections and the facts list.
    headings = [
        "".join(c.content for c in tokens[i + 1].children or [] if c.type == "text")
        for i, t in enumerate(tokens)
        if t.type == "heading_open"
    ]
    assert headings == [DOCUMENT.title, "Prompt", "Output", "Error"]
    rendered = MarkdownIt("commonmark").render(text)
    for line in HOSTILE[1:]:
        assert line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in rendered, line


def test_the_pdf_renders_emoji_and_symbols_and_names_what_no_font_has(tmp_path: Path) -> None:
    document = dataclasses.replace(DOCUMENT, title="Owls", prompt="An owl 🦉 and a quill ✒ and ∮", output="\U0001fae8")
    path = tmp_path / "export.pdf"
    path.write_bytes(documents.render_pdf(document))
    text = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
    assert "An owl 🦉 and a quill ✒ and ∮" in text
    # No installed font draws this one: it is written out, never dropped.
    assert "[U+1FAE8]" in text
