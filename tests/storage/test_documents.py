"""Export documents: what a PDF or Markdown file holds, and the version that names it."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from apps.exports import documents
from apps.exports.documents import FORMATS, ExportDocument, UnknownExportFormat, document_version, export_format_get

DOCUMENT = ExportDocument(
    generation_id=252325678045208576,
    title="Déjà vu in the scriptorium",
    status="Succeeded",
    created_at="2026-03-01T09:30:00+00:00",
    completed_at="2026-03-01T09:30:04+00:00",
    prompt="Write about déjà vu\nin two lines",
    output="The quill remembers — every line\n" + "it wrote before; " * 40 + "unbroken" * 30,
    error="",
    settings=(("Max tokens", "200"), ("Seed", "7")),
    usage="9 prompt + 41 completion tokens",
)


def pdf_text(data: bytes, tmp_path: Path) -> str:
    path = tmp_path / "export.pdf"
    path.write_bytes(data)
    return subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout


def test_a_pdf_holds_the_title_the_prompt_and_the_whole_output_as_text(tmp_path: Path) -> None:
    text = pdf_text(documents.render_pdf(DOCUMENT), tmp_path)
    flat = " ".join(text.split())
    assert flat.startswith("Déjà vu in the scriptorium Generation 252325678045208576 · Succeeded")
    assert "Prompt Write about déjà vu in two lines" in flat
    assert "Output The quill remembers — every line it wrote before;" in flat
    assert "".join(text.split()).count("unbroken") == 30  # a word wider than the page wraps, nothing is cut


def test_without_a_unicode_font_a_pdf_falls_back_to_latin1_and_names_what_it_cannot_draw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(documents, "pdf_font_path", lambda: None)
    document = dataclasses.replace(DOCUMENT, output="café 東京")
    text = pdf_text(documents.render_pdf(document), tmp_path)
    assert "café [U+6771][U+4EAC]" in text
    assert document_version(document, FORMATS["pdf"]) != document_version(DOCUMENT, FORMATS["pdf"])


def test_the_same_document_always_renders_the_same_bytes_under_the_same_version() -> None:
    for export_format in FORMATS.values():
        assert export_format.render(DOCUMENT) == export_format.render(dataclasses.replace(DOCUMENT))
        assert document_version(DOCUMENT, export_format) == document_version(
            dataclasses.replace(DOCUMENT), export_format
        )


@pytest.mark.parametrize("field", ["title", "status", "completed_at", "prompt", "output", "error", "usage"])
def test_any_change_to_the_document_gives_it_a_new_version(field: str) -> None:
    changed = dataclasses.replace(DOCUMENT, **{field: getattr(DOCUMENT, field) + " (edited)"})
    for export_format in FORMATS.values():
        assert document_version(changed, export_format) != document_version(DOCUMENT, export_format)
    assert document_version(DOCUMENT, FORMATS["pdf"]) != document_version(DOCUMENT, FORMATS["md"])


def test_markdown_escapes_the_title_and_the_output() -> None:
    document = dataclasses.replace(DOCUMENT, title="# *not* a heading", output="**bold** stays plain")
    text = FORMATS["md"].render(document).decode()
    assert text.startswith("# \\# \\*not\\* a heading\n")
    assert "## Output\n\n\\*\\*bold\\*\\* stays plain\n" in text


def test_an_unknown_format_names_the_ones_there_are() -> None:
    with pytest.raises(UnknownExportFormat, match=r"'docx'; available: md, pdf"):
        export_format_get("docx")
