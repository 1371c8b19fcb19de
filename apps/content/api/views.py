from __future__ import annotations

import logging
from typing import Any

from django.http import Http404, HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle, UserRateThrottle
from rest_framework.views import APIView

from apps.content.models import Generation
from apps.content.selectors import generation_get, generation_list
from apps.content.services import generation_create, generation_create_once, generation_delete
from apps.content.streaming import generation_events, sse_response

from .serializers import GenerationCreateSerializer, GenerationSerializer

SSE_DESCRIPTION = """Server-sent events (`text/event-stream`):

    event: chunk
    data: {"text": "...", "completion_tokens": 12}

    event: done
    data: {"status": "succeeded", "finish_reason": "length", "output": "...", "usage": {...}}

    event: error
    data: {"status": "failed"|"queued", "message": "...", "retry_after": 4.0}

A queued generation is generated live; one running elsewhere is waited for; a finished one is sent as one
`chunk` and `done`. Closing the connection early cancels the live generation, which then finishes in the
background."""


logger = logging.getLogger(__name__)

IDEMPOTENCY_KEY_MAX = 255
IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        f"Up to {IDEMPOTENCY_KEY_MAX} printable ASCII characters, unique per generation you mean to create "
        "(a UUID). Retrying a create with the same key (after a timeout, a dropped connection, a 503) "
        "never creates a second generation: the first one is returned with 200 and `Idempotent-Replayed: true`."
    ),
)


class FailOpenThrottle(SimpleRateThrottle):
    """Counts in the shared cache; with the cache down the request is let through and a warning logged.

    Throttling protects capacity; refusing every API call because its counter
    cannot be read would turn a cache outage into a full outage.
    """

    def allow_request(self, request: Request, view: APIView) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception as exc:
            logger.warning("throttle %s not applied: the cache is unreachable (%s)", self.scope, exc)
            return True


class ApiUserThrottle(FailOpenThrottle, UserRateThrottle):
    scope = "api_user"


class GenerationCreateThrottle(FailOpenThrottle, UserRateThrottle):
    scope = "generation_create"


def _idempotency_key(request: Request) -> str:
    key = request.headers.get("Idempotency-Key", "")
    if len(key) > IDEMPOTENCY_KEY_MAX or not all(" " <= char <= "~" for char in key):
        raise serializers.ValidationError(
            {"Idempotency-Key": [f"Use 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters, such as a UUID."]}
        )
    return key.strip()


class EventStreamRenderer(BaseRenderer):
    """Lets a client ask for ``Accept: text/event-stream`` (EventSource does); errors are still JSON."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return JSONRenderer().render(data)


@extend_schema_view(
    list=extend_schema(summary="List my generations, newest first"),
    retrieve=extend_schema(summary="Get one of my generations"),
    destroy=extend_schema(summary="Delete one of my generations"),
)
class GenerationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Generation]):
    """My generations. Anyone else's answer 404, as unknown IDs do."""

    serializer_class = GenerationSerializer
    lookup_url_kwarg = "id"

    def get_renderers(self) -> list[BaseRenderer]:
        if self.action == "stream":
            return [JSONRenderer(), EventStreamRenderer()]
        return super().get_renderers()

    def get_throttles(self) -> list[BaseThrottle]:
        throttles: list[BaseThrottle] = [ApiUserThrottle()]
        if self.action == "create":
            throttles.append(GenerationCreateThrottle())
        return throttles

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        if self.action == "stream":  # an error is one JSON body, not an event stream, whatever was asked for
            self.request.accepted_renderer = JSONRenderer()
            self.request.accepted_media_type = JSONRenderer.media_type
        return response

    @property
    def user_id(self) -> int:
        return int(self.request.user.pk)

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):  # schema generation: no user
            return Generation.objects.none()
        return generation_list(user_id=self.user_id)

    def get_object(self) -> Generation:
        try:
            return generation_get(user_id=self.user_id, generation_id=self.kwargs["id"])
        except Generation.DoesNotExist:
            raise Http404("No such generation.") from None

    @extend_schema(
        summary="Create a generation",
        description=(
            "Stores it as queued and queues its job; follow it with `stream_url` or by polling `url`. "
            "It succeeds even while the job broker is down: the job is sent when it is back. "
            "Send an `Idempotency-Key` to make retries safe."
        ),
        request=GenerationCreateSerializer,
        parameters=[IDEMPOTENCY_KEY],
        responses={
            201: GenerationSerializer,
            200: OpenApiResponse(GenerationSerializer, description="Replay: the generation this key created."),
        },
    )
    def create(self, request: Request) -> Response:
        key = _idempotency_key(request)
        payload = GenerationCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        if key:
            outcome = generation_create_once(user_id=self.user_id, idempotency_key=key, **payload.validated_data)
            generation, created = outcome.generation, outcome.created
        else:
            generation, created = generation_create(user_id=self.user_id, **payload.validated_data), True
        body = self.get_serializer(generation).data
        headers = {"Location": body["url"]}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK, headers=headers)

    def destroy(self, request: Request, id: int) -> Response:
        try:
            generation_delete(user_id=self.user_id, generation_id=id)
        except Generation.DoesNotExist:
            raise Http404("No such generation.") from None
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Follow a generation live",
        description=SSE_DESCRIPTION,
        responses={(200, "text/event-stream"): OpenApiResponse(OpenApiTypes.STR, description="Event stream")},
    )
    def stream(self, request: Request, id: int) -> HttpResponseBase:
        generation = self.get_object()
        return sse_response(generation_events(user_id=generation.user_id, generation_id=generation.id))
