"""Strict request bodies: a field the API does not know is an error (400), never silently ignored."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import serializers


class RejectUnknownFieldsMixin:
    """For request serializers; the OpenAPI schema says the same with ``additionalProperties: false``."""

    fields: Any
    initial_data: Any

    def validate(self, attrs: Any) -> Any:
        if isinstance(self.initial_data, Mapping):
            unknown = sorted(set(self.initial_data) - set(self.fields))
            if unknown:
                names = ", ".join(repr(name) for name in unknown[:5])
                raise serializers.ValidationError(
                    f"Unknown field(s) {names}; the accepted fields are {', '.join(sorted(self.fields))}."
                )
        return super().validate(attrs)  # type: ignore[misc]
