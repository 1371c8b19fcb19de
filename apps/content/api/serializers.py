from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.content.models import (
    MAX_TOKENS_LIMIT,
    PROMPT_MAX_CHARS,
    STOP_SEQUENCE_MAX_CHARS,
    STOP_SEQUENCES_MAX,
    Generation,
)
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


class GenerationCreateSerializer(serializers.Serializer[dict[str, Any]]):
    """What to generate. Only ``prompt`` is required."""

    prompt = serializers.CharField(max_length=PROMPT_MAX_CHARS)
    max_tokens = serializers.IntegerField(min_value=1, max_value=MAX_TOKENS_LIMIT, default=200)
    temperature = serializers.FloatField(min_value=0.0, max_value=2.0, default=0.8)
    top_p = serializers.FloatField(max_value=1.0, default=0.95, help_text="Greater than 0, at most 1.")
    seed = serializers.IntegerField(min_value=0, max_value=KEYSPACE_END, required=False, allow_null=True, default=None)
    stop = serializers.ListField(
        child=serializers.CharField(min_length=1, max_length=STOP_SEQUENCE_MAX_CHARS, trim_whitespace=False),
        max_length=STOP_SEQUENCES_MAX,
        default=list,
        help_text=f"Up to {STOP_SEQUENCES_MAX} sequences of 1 to {STOP_SEQUENCE_MAX_CHARS} characters.",
    )

    def validate_top_p(self, value: float) -> float:
        if value <= 0:
            raise serializers.ValidationError("Ensure this value is greater than 0.")
        return value
