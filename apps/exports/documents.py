"""Turning a generation into a document: the formats, their renderers, and the version that names a file.

A document's version is a hash of everything that shapes the file's bytes (the
generation's fields, the format, the layout revision, the PDF font). Same
version, same bytes: an export is rendered and uploaded once, and a changed
generation gets a new key instead of overwriting one a cache may hold.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from fontTools.ttLib import TTFont

from apps.content.models import Generation

# Bump when a renderer's output changes, so every export gets a new version (and key).
LAYOUT_REVISION = 2

# Unicode TrueType fonts tried for PDFs when QQ_EXPORT_PDF_FONT is not set (Debian paths).
PDF_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
)


# Fonts for characters the body font lacks (emoji, symbols), tried in order; fpdf2 switches per character.
PDF_FALLBACK_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf",
    "/usr/share/fonts/truetype/noto/NotoSansSymbols2-Regular.ttf",
)


class UnknownExportFormat(LookupError):
    pass


@dataclass(frozen=True)
class ExportDocument:
    generation_id: int
    title: str
    status: str
    created_at: str
    completed_at: str
    prompt: str
    output: str
    error: str
    settings: tuple[tuple[str, str], ...]
    usage: str


@dataclass(frozen=True)
class ExportFormat:
    code: str
    label: str
    extension: str
    content_type: str
    render: Callable[[ExportDocument], bytes]
    fingerprint: Callable[[], str]


def document_from_generation(generation: Generation) -> ExportDocument:
    completed = generation.completed_at.isoformat() if generation.completed_at else ""
    return ExportDocument(
        generation_id=generation.id,
        title=generation.title,
        status=generation.get_status_display(),
        created_at=generation.created_at.isoformat(),
        completed_at=completed,
        prompt=generation.prompt,
        output=generation.output,
        error=generation.error,
        settings=(
            ("Max tokens", str(generation.max_tokens)),
            ("Temperature", f"{generation.temperature:g}"),
            ("Top p", f"{generation.top_p:g}"),
            ("Seed", "random" if generation.seed is None else str(generation.seed)),
            ("Stop sequences", ", ".join(repr(s) for s in generation.stop) or "none"),
        ),
        usage=f"{generation.prompt_tokens} prompt + {generation.completion_tokens} completion tokens",
    )


def document_version(document: ExportDocument, export_format: ExportFormat) -> str:
    """A short hash naming exactly the bytes ``export_format`` renders for ``document``."""
    identity = {
        "document": asdict(document),
        "format": export_format.code,
        "layout": LAYOUT_REVISION,
        "renderer": export_format.fingerprint(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


# --- Markdown -----------------------------------------------------------------------------------------

# Characters that mean something inline anywhere in CommonMark, and the line starts that open a block.
_MD_INLINE = re.compile(r"([\\`*_\[\]<>|~&!])")
_MD_LINE_START = re.compile(r"^(\s*)([#>+=-]|\d+(?=[.)]))", re.MULTILINE)


def _escape_line_start(match: re.Match[str]) -> str:
    indent, marker = match.group(1), match.group(2)
    # "1." / "1)" open an ordered list: escape the punctuation after the digits; other markers get a backslash.
    return indent + (marker + "\\" if marker.isdigit() else "\\" + marker)


def md_escape(text: str) -> str:
    """``text`` as Markdown that renders as exactly that text: no links, HTML, emphasis, headings or lists."""
    return _MD_LINE_START.sub(_escape_line_start, _MD_INLINE.sub(r"\\\1", text))


def render_markdown(document: ExportDocument) -> bytes:
    """The document as CommonMark; every string that came from the user or the generator is escaped."""
    lines = [f"# {md_escape(document.title)}", ""]
    lines += [
        f"- **Generation:** {document.generation_id}",
        f"- **Status:** {document.status}",
        f"- **Created:** {document.created_at}",
    ]
    if document.completed_at:
        lines.append(f"- **Completed:** {document.completed_at}")
    lines += [f"- **{label}:** {md_escape(value)}" for label, value in document.settings]
    lines += [f"- **Usage:** {document.usage}", "", "## Prompt", ""]
    lines += [f"> {md_escape(line)}" if line.strip() else ">" for line in document.prompt.splitlines()]
    lines += ["", "## Output", ""]
    lines.append(md_escape(document.output) if document.output else f"_No output yet (status: {document.status})._")
    if document.error:
        lines += ["", "## Error", "", md_escape(document.error)]
    return ("\n".join(lines).rstrip() + "\n").encode()


# --- PDF ----------------------------------------------------------------------------------------------


def pdf_font_path() -> Path | None:
    """The Unicode font PDFs use, or None to fall back to Helvetica (Latin-1 only)."""
    configured = getattr(settings, "QQ_EXPORT_PDF_FONT", "")
    if configured:
        return Path(configured)
    return next((Path(p) for p in PDF_FONT_CANDIDATES if Path(p).is_file()), None)


def pdf_fallback_font_paths() -> list[Path]:
    """Fonts for the characters the body font lacks (emoji and symbols), those installed, in order."""
    return [Path(p) for p in PDF_FALLBACK_FONT_CANDIDATES if Path(p).is_file()]


def _pdf_fingerprint() -> str:
    fonts = [f for f in (pdf_font_path(), *pdf_fallback_font_paths()) if f is not None]
    return ",".join(f"{f.name}:{f.stat().st_size}" for f in fonts) or "helvetica"


@lru_cache(maxsize=8)
def _font_codepoints(path: str, size: int) -> frozenset[int]:
    """Every code point ``path`` has a glyph for (``size`` keys the cache to the file's version)."""
    with TTFont(path, lazy=True) as font:
        return frozenset(font.getBestCmap() or {})


def unrenderable_marked(text: str, fonts: list[Path] | None) -> str:
    """``text`` with each character no font can draw written as ``[U+XXXX]``, never silently dropped.

    ``fonts`` None means Helvetica (Latin-1 only); line breaks and tabs always pass.
    """
    if fonts is None:
        covered: frozenset[int] | set[int] = set(range(0x20, 0x7F)) | set(range(0xA0, 0x100))
    else:
        covered = frozenset().union(*(_font_codepoints(str(f), f.stat().st_size) for f in fonts))
    return "".join(ch if ch in "\n\t" or ord(ch) in covered else f"[U+{ord(ch):04X}]" for ch in text)


def _latin1(text: str) -> str:
    """Helvetica covers Latin-1 only: decompose what can be, mark the rest as ``[U+XXXX]``."""
    return unrenderable_marked(unicodedata.normalize("NFKC", text), None)


def render_pdf(document: ExportDocument) -> bytes:
    # fpdf2 (with numpy and Pillow) takes about 0.3 s of CPU to import: every web server, worker and command
    # that loads this module paid it at start-up, while only a PDF export needs it.
    from fpdf import FPDF
    from fpdf.enums import Align, XPos, YPos

    pdf = FPDF(format="A4")
    pdf.set_margins(18, 18, 18)
    pdf.set_auto_page_break(True, margin=18)
    # Fixed metadata, so the same document always renders to the same bytes.
    pdf.set_creation_date(datetime.fromisoformat(document.created_at))
    pdf.set_creator("QuantumQuill")
    pdf.set_producer("QuantumQuill")
    pdf.set_author("QuantumQuill")
    font = pdf_font_path()
    if font is not None:
        pdf.add_font("body", "", str(font))
        fallbacks = pdf_fallback_font_paths()
        for number, fallback in enumerate(fallbacks):
            pdf.add_font(f"fallback{number}", "", str(fallback))
        pdf.set_fallback_fonts([f"fallback{n}" for n in range(len(fallbacks))])
        fonts = [font, *fallbacks]
        family, text = "body", (lambda value: unrenderable_marked(value, fonts))
    else:
        family, text = "helvetica", _latin1
    pdf.set_title(text(document.title))
    pdf.add_page()

    def block(value: str, size: float, height: float, gray: int = 20) -> None:
        pdf.set_font(family, size=size)
        pdf.set_text_color(gray)
        pdf.multi_cell(0, height, text(value), align=Align.L, new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    block(document.title, 17, 8.5)
    facts = [f"Generation {document.generation_id}", document.status, f"created {document.created_at}"]
    if document.completed_at:
        facts.append(f"completed {document.completed_at}")
    block(" · ".join(facts), 9, 5, gray=110)
    block("; ".join(f"{label}: {value}" for label, value in document.settings) + f"; {document.usage}", 9, 5, gray=110)
    for heading, body in (
        ("Prompt", document.prompt),
        ("Output", document.output or f"No output yet ({document.status})."),
    ):
        pdf.ln(4)
        block(heading, 13, 7)
        block(body, 11, 6)
    if document.error:
        pdf.ln(4)
        block("Error", 13, 7)
        block(document.error, 11, 6, gray=150)
    return bytes(pdf.output())


FORMATS: dict[str, ExportFormat] = {
    "pdf": ExportFormat("pdf", "PDF", "pdf", "application/pdf", render_pdf, _pdf_fingerprint),
    "md": ExportFormat("md", "Markdown", "md", "text/markdown; charset=utf-8", render_markdown, lambda: "markdown"),
}


def export_format_get(code: str) -> ExportFormat:
    try:
        return FORMATS[code]
    except KeyError:
        raise UnknownExportFormat(f"Unknown export format {code!r}; available: {', '.join(sorted(FORMATS))}.") from None
