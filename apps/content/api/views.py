from __future__ import annotations

from typing import Any

from django.http import Http404, HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle, BaseThrottle, UserRateThrottle

from apps.content.models import Generation
from apps.content.selectors import generation_get, generation_list
from apps.content.services import generation_create, generation_delete
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


class ApiUserThrottle(UserRateThrottle):
    scope = "api_user"


class GenerationCreateThrottle(UserRateThrottle):
    scope = "generation_create"


class AuthTokenThrottle(AnonRateThrottle):
    scope = "auth_token"


class EventStreamRenderer(BaseRenderer):
    """Lets a client ask for ``Accept: text/event-stream`` (EventSource does); errors are still JSON."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return JSONRenderer().render(data)


@extend_schema(
    summary="Get an API token",
    description="Exchange a username and password for the user's token; send it as `Authorization: Token <key>`.",
    responses={
        200: inline_serializer("AuthTokenResponse", {"token": serializers.CharField()}),
        400: OpenApiResponse(description="Wrong or missing credentials."),
    },
)
class AuthTokenView(ObtainAuthToken):
    authentication_classes = ()  # credentials are in the body; no session, so no CSRF check
    throttle_classes = (AuthTokenThrottle,)


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
        description="Stores it as queued and queues its job; follow it with `stream_url` or by polling `url`.",
        request=GenerationCreateSerializer,
        responses={201: GenerationSerializer},
    )
    def create(self, request: Request) -> Response:
        payload = GenerationCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        generation = generation_create(user_id=self.user_id, **payload.validated_data)
        body = self.get_serializer(generation).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})

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
