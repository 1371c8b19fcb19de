from __future__ import annotations

from typing import Any

from django.core.validators import RegexValidator
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.content.models import (
    MAX_TOKENS_LIMIT,
    PROMPT_MAX_CHARS,
    STOP_SEQUENCE_MAX_CHARS,
    STOP_SEQUENCES_MAX,
    TOP_P_MIN,
    Generation,
)
from apps.security.serializers import RejectUnknownFieldsMixin
from shardrouter.keyspace import KEYSPACE_END


class GenerationSerializer(serializers.ModelSerializer[Generation]):
    """A generation as the API shows it. 64-bit IDs are strings: JavaScript numbers lose their last digits."""

    id = serializers.CharField(read_only=True, help_text="64-bit ID, as a string.")
    stop = serializers.ListField(child=serializers.CharField(), read_only=True)
    url = serializers.SerializerMethodField()
    stream_url = serializers.SerializerMethodField()

    class Meta:
        model = Generation
        fields = [
            "id",
            "status",
            "prompt",
            "max_tokens",
            "temperature",
            "top_p",
            "seed",
            "stop",
            "output",
            "error",
            "finish_reason",
            "prompt_tokens",
            "completion_tokens",
            "created_at",
            "completed_at",
            "url",
            "stream_url",
        ]
        read_only_fields = fields

    def _absolute(self, name: str, generation: Generation) -> str:
        path = reverse(name, kwargs={"id": generation.id})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, generation: Generation) -> str:
        return self._absolute("api:generation-detail", generation)

    @extend_schema_field(OpenApiTypes.URI)
    def get_stream_url(self, generation: Generation) -> str:
        return self._absolute("api:generation-stream", generation)


# Text PostgreSQL can store (no NUL) with something besides whitespace; the same rule as the web form's
# stripped, required field. Written so that the OpenAPI pattern means the same in JavaScript and Python.
NOT_BLANK = RegexValidator(r"^[^\u0000]*\S[^\u0000]*$", "Enter some text (not only spaces); NUL is not allowed.")
NO_NUL = RegexValidator(r"^[^\u0000]+$", "NUL characters are not allowed.")


class StrictCharField(serializers.CharField):
    """A CharField that takes only JSON strings: DRF's would turn ``42`` into ``"42"``."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """Only JSON integers (``3`` or ``3.0``): no strings, booleans or fractions."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, (int, float)) or data != int(data):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictFloatField(serializers.FloatField):
    """Only JSON numbers: no strings or booleans."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


class GenerationCreateSerializer(RejectUnknownFieldsMixin, serializers.Serializer[dict[str, Any]]):
    """What to generate. Only ``prompt`` is required. The limits are the web form's (apps.content.forms)."""

    prompt = StrictCharField(
        min_length=1, max_length=PROMPT_MAX_CHARS, validators=[NOT_BLANK], help_text="What to write about."
    )
    max_tokens = StrictIntegerField(min_value=1, max_value=MAX_TOKENS_LIMIT, default=200)
    temperature = StrictFloatField(min_value=0.0, max_value=2.0, default=0.8)
    top_p = StrictFloatField(
        min_value=TOP_P_MIN, max_value=1.0, default=0.95, help_text=f"From {TOP_P_MIN} to 1 (the web form's range)."
    )
    seed = StrictIntegerField(min_value=0, max_value=KEYSPACE_END, required=False, allow_null=True, default=None)
    stop = serializers.ListField(
        child=StrictCharField(
            min_length=1, max_length=STOP_SEQUENCE_MAX_CHARS, trim_whitespace=False, validators=[NO_NUL]
        ),
        max_length=STOP_SEQUENCES_MAX,
        default=list,
        help_text=f"Up to {STOP_SEQUENCES_MAX} sequences of 1 to {STOP_SEQUENCE_MAX_CHARS} characters.",
    )
