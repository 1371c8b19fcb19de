"""The API's error responses in the OpenAPI schema: one ``Error`` shape, documented on every operation.

``ERROR_RESPONSES`` is for views that spell their responses out; the
post-processing hook ``document_error_responses`` adds whatever an operation can
answer and does not list yet, so the schema names every status code the API
sends (schemathesis holds the API to it).
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

ERROR_COMPONENT = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "What was wrong and what to do about it.",
    "properties": {
        "detail": {"type": "string", "description": "A sentence for people."},
        "code": {"type": "string", "description": "A stable reason for programs."},
    },
    "required": ["detail"],
}
VALIDATION_SCHEMA: dict[str, Any] = {
    "description": "Either an `Error`, or the fields that failed validation, each with its messages.",
    "anyOf": [
        {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"},
        {"type": "object", "description": "Field name -> messages (nested for lists and objects)."},
    ],
}


class ErrorSerializer(serializers.Serializer[dict[str, Any]]):
    detail = serializers.CharField()
    code = serializers.CharField(required=False)


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(OpenApiTypes.OBJECT, description=description)


ERROR_RESPONSES: dict[int, OpenApiResponse] = {}

# status -> (description, when it applies)
_STANDARD = {
    "400": "Malformed request: invalid JSON, JSON nested too deep, NUL bytes, or fields that fail validation.",
    "401": "No credentials, or a token that is invalid, expired or revoked.",
    "404": "No such object or page (someone else's objects answer the same).",
    "405": "Method not allowed on this path.",
    "406": "The Accept header asks for a type this endpoint cannot produce.",
    "413": "The request body is larger than the limit.",
    "415": "The body is not JSON.",
    "429": "Too many requests (or login attempts); see Retry-After.",
    "503": "A database, cache or service the request needs is unavailable; see Retry-After.",
}


def _error_content(code: str) -> dict[str, Any]:
    schema = VALIDATION_SCHEMA if code == "400" else {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    return {"application/json": {"schema": schema}}


def document_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular post-processing hook: the ``Error`` component and every error code on every operation."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components[ERROR_COMPONENT] = ERROR_SCHEMA
    for _path, operations in result.get("paths", {}).items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            codes = {"400", "404", "405", "406", "429", "503"}
            if operation.get("security") not in ([], [{}]):
                codes.add("401")
            if "requestBody" in operation:
                codes |= {"413", "415"}
            for media in operation.get("requestBody", {}).get("content", {}).values():
                ref = media.get("schema", {}).get("$ref", "")
                if ref.startswith("#/components/schemas/"):  # request serializers reject unknown fields
                    components[ref.rsplit("/", 1)[-1]]["additionalProperties"] = False
            responses = operation["responses"]
            for code in sorted(codes):
                entry = responses.setdefault(code, {"description": _STANDARD[code]})
                entry["content"] = _error_content(code)
    return result


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """``Authorization: Token <key>`` in the schema (registered when this module is imported, in apps.py)."""

    target_class = "apps.security.authentication.ApiTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <key>`: a key from `POST /api/v1/auth/token/` or the account page.",
        }
