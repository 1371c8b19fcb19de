"""Word-level tokenization and detokenization for the n-gram model."""

from __future__ import annotations

import re

BOS = "<s>"
EOS = "</s>"
PARAGRAPH_BREAK = "\n\n"

# Order matters: dotted names ("os.path.join", "3.14", "e.g") stay one token,
# words keep inner apostrophes and hyphens ("don't", "high-performance"), a
# few multi-character operators stay whole, and any other symbol is a token of
# its own.
_TOKEN = re.compile(r"\w+(?:\.\w+)+|\w+(?:[-']\w+)*|\(\)|\.\.\.|--|->|[=!<>]=|\*\*|[^\w\s]")

_NO_SPACE_BEFORE = frozenset(".,;:!?)]}") | {"...", "()"}
_NO_SPACE_AFTER = frozenset("([{$#@")
_QUOTES = frozenset("\"'`")


def _looks_like_code_name(token: str) -> bool:
    return ("." in token or "_" in token) and token[-1:].isalnum()


def tokenize(text: str) -> list[str]:
    """Split text into word and punctuation tokens."""
    return _TOKEN.findall(text)


class Detokenizer:
    """Turns tokens back into text one at a time, with natural spacing.

    It remembers the previous token and which quotes are open, so each piece it
    returns can be appended to the text produced so far.
    """

    def __init__(self, preceding_text: str = "") -> None:
        self._previous = ""
        self._open_quotes: set[str] = set()
        self._at_line_start = preceding_text == "" or preceding_text[-1].isspace()
        for token in tokenize(preceding_text):
            self.piece(token)
        if preceding_text and preceding_text[-1].isspace():
            self._at_line_start = True

    def piece(self, token: str) -> str:
        """Return the text to append for ``token`` (with any leading space)."""
        if token == EOS:
            self._previous = ""
            self._open_quotes.clear()
            self._at_line_start = True
            return PARAGRAPH_BREAK
        space = not self._at_line_start
        if token in _QUOTES:
            if token in self._open_quotes:
                self._open_quotes.discard(token)
                space = False
            else:
                self._open_quotes.add(token)
        elif token in _NO_SPACE_BEFORE:
            space = False
        if self._previous in _NO_SPACE_AFTER or (self._previous in _QUOTES and self._previous in self._open_quotes):
            space = False
        elif token == "(" and _looks_like_code_name(self._previous):
            space = False  # a call such as os.path.join(a, b)
        self._previous = token
        self._at_line_start = False
        return (" " + token) if space else token


def detokenize(tokens: list[str]) -> str:
    """Join tokens into text (the inverse of :func:`tokenize`, up to spacing)."""
    detokenizer = Detokenizer()
    return "".join(detokenizer.piece(token) for token in tokens)
