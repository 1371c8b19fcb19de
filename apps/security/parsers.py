"""A JSON parser for the API that refuses oversized, over-deep and NUL-bearing bodies with 4xx, never 500.

Python's ``json`` module recurses once per nesting level, so a few kilobytes of
``[[[[...`` raise ``RecursionError`` inside the parser. The depth is therefore
measured on the raw text before parsing (brackets outside strings), which costs
one regular-expression pass over a body that is already capped in size.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser

# A JSON string, written as "unrolled loop" so the engine takes runs of plain characters at once.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


def json_depth(text: str, *, stop_above: int | None = None) -> int:
    """The deepest nesting of arrays and objects in ``text`` (strings, and brackets inside them, skipped).

    With ``stop_above``, counting stops as soon as the depth exceeds it (the answer is then that depth).
    """
    depth = deepest = 0
    for match in _BRACKET.finditer(_STRING.sub('""', text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if stop_above is not None and depth > stop_above:
                return deepest
        else:
            depth -= 1
    return deepest


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, such as "\ud800"
        return False
    return True


def contains_unstorable_text(value: Any) -> bool:
    """Whether any string (key or value) in parsed JSON holds NUL or a lone surrogate: PostgreSQL refuses both."""
    if isinstance(value, str):
        return not _storable(value)
    if isinstance(value, Mapping):
        return any(contains_unstorable_text(k) or contains_unstorable_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_unstorable_text(item) for item in value)
    return False


class StrictJSONParser(JSONParser):
    """DRF's JSON parser with a size limit (413), a depth limit (400) and no NUL characters (400)."""

    def parse(self, stream: IO[bytes] | None, media_type: str | None = None, parser_context: Any = None) -> Any:
        max_bytes: int = settings.QQ_API_JSON_MAX_BYTES
        max_depth: int = settings.QQ_API_JSON_MAX_DEPTH
        if stream is None:
            return None
        raw = stream.read(max_bytes + 1)
        if len(raw) > max_bytes:
            raise PayloadTooLarge(f"The JSON body is larger than {max_bytes} bytes; send less data per request.")
        try:
            text = raw.decode((parser_context or {}).get("encoding") or "utf-8")
        except UnicodeDecodeError:
            raise ParseError("The JSON body is not valid UTF-8.") from None
        if json_depth(text, stop_above=max_depth) > max_depth:
            raise ParseError(f"JSON nested more than {max_depth} levels deep; at most {max_depth} levels are accepted.")
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        if contains_unstorable_text(data):
            raise ParseError(
                "NUL characters (\\u0000) and unpaired surrogates (\\ud800-\\udfff) are not accepted in JSON strings."
            )
        return data
