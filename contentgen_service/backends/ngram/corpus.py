"""Training text for the n-gram model: docstrings of the installed standard library.

Every Python installation carries this corpus (a few hundred thousand words of
English prose about programming), so the model trains without any download.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

from contentgen_service.backends.ngram.text import tokenize

# Test suites, vendored third-party code and bytecode caches are not the
# library's own prose.
_SKIPPED_DIRS = frozenset({"test", "tests", "site-packages", "dist-packages", "__pycache__"})

_RST_ROLE = re.compile(r":[\w:.+-]+:`~?([^`<]*?)\s*(?:<[^>]*>)?`")
_BACKTICKS = re.compile(r"`+([^`]*)`+_?")
_EMPHASIS = re.compile(r"\*{1,2}(\w[^*\n]*?)\*{1,2}")
_WHITESPACE = re.compile(r"\s+")
_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
_MIN_PARAGRAPH_TOKENS = 4
_MIN_WORD_SHARE = 0.7


def stdlib_root() -> Path:
    """Return the directory of the running interpreter's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def source_files(root: Path) -> list[Path]:
    """List the library's .py files in a deterministic order."""
    files: list[Path] = []
    for directory, subdirs, names in os.walk(root):
        subdirs[:] = [d for d in subdirs if d not in _SKIPPED_DIRS and not d.startswith("config-")]
        files.extend(Path(directory, name) for name in names if name.endswith(".py"))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def fingerprint(root: Path, files: list[Path]) -> str:
    """Identify a corpus by interpreter version and each file's name, size and mtime.

    Cheap enough to compute at every start (it only stats files), and it
    changes whenever the library is upgraded.
    """
    digest = hashlib.sha256(sys.version.encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def docstrings(files: list[Path]) -> Iterator[str]:
    """Yield the module, class and function docstrings of each file, in order."""
    for path in files:
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, UnicodeDecodeError):
            continue  # a file this interpreter cannot parse adds nothing
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                text = ast.get_docstring(node, clean=True)
                if text:
                    yield text


def prose_paragraphs(docstring: str) -> Iterator[str]:
    """Yield the paragraphs of a docstring that read as prose, markup removed.

    Doctest sessions, code blocks and parameter tables are dropped: they are
    mostly symbols and would teach the model to write code fragments.
    """
    for raw in re.split(r"\n\s*\n", docstring):
        if ">>>" in raw or raw.rstrip().endswith("::"):
            continue
        text = _RST_ROLE.sub(r"\1", raw)
        text = _BACKTICKS.sub(r"\1", text)
        text = _EMPHASIS.sub(r"\1", text)
        text = _WHITESPACE.sub(" ", text).strip()
        tokens = tokenize(text)
        if len(tokens) < _MIN_PARAGRAPH_TOKENS:
            continue
        words = sum(1 for token in tokens if _WORD.fullmatch(token))
        if words / len(tokens) >= _MIN_WORD_SHARE:
            yield text


def training_sentences(files: list[Path]) -> Iterator[list[str]]:
    """Yield each prose paragraph of the corpus as a token list."""
    for docstring in docstrings(files):
        for paragraph in prose_paragraphs(docstring):
            yield tokenize(paragraph)
