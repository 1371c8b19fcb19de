"""``/api/v1/auth/``: get a token for a username and password, list, revoke and rotate my tokens."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import AnonRateThrottle, BaseThrottle, UserRateThrottle
from rest_framework.views import APIView

from apps.content.api.views import FailOpenThrottle

from .authentication import ApiTokenAuthentication
from .models import ApiToken
from .schema import ERROR_RESPONSES, error_response
from .serializers import RejectUnknownFieldsMixin
from .tokens import NAME_MAX_CHARS, IssuedToken, api_token_create, api_token_revoke, api_token_rotate, api_tokens_of


class AuthTokenThrottle(FailOpenThrottle, AnonRateThrottle):
    scope = "auth_token"


class TokenUserThrottle(FailOpenThrottle, UserRateThrottle):
    scope = "api_user"


class TokenRequestSerializer(RejectUnknownFieldsMixin, AuthTokenSerializer):
    username = serializers.CharField(
        label="Username", write_only=True, min_length=1, max_length=150, trim_whitespace=False
    )
    password = serializers.CharField(
        label="Password",
        style={"input_type": "password"},
        trim_whitespace=False,
        write_only=True,
        min_length=1,
        max_length=4096,
    )
    name = serializers.CharField(
        max_length=NAME_MAX_CHARS,
        required=False,
        allow_blank=True,
        default="API",
        help_text='A name to tell this token apart (blank: "API token").',
    )


class ApiTokenSerializer(serializers.ModelSerializer[ApiToken]):
    id = serializers.CharField(read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "expires_at"]
        read_only_fields = fields


class IssuedTokenSerializer(ApiTokenSerializer):
    token = serializers.CharField(
        read_only=True, help_text="The key; shown once. Send it as `Authorization: Token <key>`."
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = ["token", *ApiTokenSerializer.Meta.fields]
        read_only_fields = fields


def _issued(issued: IssuedToken) -> dict[str, Any]:
    body = dict(ApiTokenSerializer(issued.token).data)
    return {"token": issued.key, **body}


class AuthTokenView(APIView):
    """POST: a new named token for a username and password. DELETE: revoke the token this request uses."""

    def _is_post(self) -> bool:
        request = getattr(self, "request", None)  # None while the schema is generated
        return request is not None and request.method == "POST"

    def get_authenticators(self) -> list[BaseAuthentication]:
        if self._is_post():
            return []  # credentials are in the body; no session, so no CSRF check
        return [ApiTokenAuthentication()]

    def get_permissions(self) -> list[BasePermission]:
        return [AllowAny()] if self._is_post() else [IsAuthenticated()]

    def get_throttles(self) -> list[BaseThrottle]:
        return [AuthTokenThrottle()] if self._is_post() else [TokenUserThrottle()]

    @extend_schema(
        summary="Get a new API token",
        description=(
            "Exchange a username and password for a new token (valid `QQ_API_TOKEN_DAYS` days); send it as "
            "`Authorization: Token <key>`. Repeated wrong passwords lock the username and the address out (429)."
        ),
        request=TokenRequestSerializer,
        responses={
            200: IssuedTokenSerializer,
            400: error_response("Missing credentials, or a malformed body."),
            401: error_response("Wrong username or password."),
            **ERROR_RESPONSES,
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        # django-axes marks a lockout on the Django request (AxesMiddleware answers it), not on DRF's wrapper.
        payload = TokenRequestSerializer(data=request.data, context={"request": request._request})
        if not payload.is_valid():
            if set(payload.errors) == {"non_field_errors"}:  # well-formed, but no such username and password
                return Response(
                    {"detail": "Wrong username or password.", "code": "authentication_failed"},
                    status=status.HTTP_401_UNAUTHORIZED,
                    headers={"WWW-Authenticate": "Token"},
                )
            raise ValidationError(payload.errors)
        user = payload.validated_data["user"]
        return Response(_issued(api_token_create(user_id=user.pk, name=payload.validated_data["name"])))

    @extend_schema(
        summary="Revoke the token of this request (log out)",
        request=None,
        responses={204: OpenApiResponse(description="Revoked."), **ERROR_RESPONSES},
    )
    def delete(self, request: Request) -> Response:
        token = request.auth
        if not isinstance(token, ApiToken):
            raise Http404("No token in this request.")
        api_token_revoke(user_id=token.user_id, token_id=token.pk)
        return Response(status=status.HTTP_204_NO_CONTENT)


class _MyTokensView(APIView):
    authentication_classes = (ApiTokenAuthentication, SessionAuthentication)
    permission_classes = (IsAuthenticated,)
    throttle_classes = (TokenUserThrottle,)

    @property
    def user_id(self) -> int:
        return int(self.request.user.pk)


class ApiTokenListView(_MyTokensView):
    @extend_schema(summary="List my active tokens", responses={200: ApiTokenSerializer(many=True), **ERROR_RESPONSES})
    def get(self, request: Request) -> Response:
        return Response(ApiTokenSerializer(api_tokens_of(user_id=self.user_id), many=True).data)


class ApiTokenDetailView(_MyTokensView):
    @extend_schema(
        summary="Revoke one of my tokens",
        responses={204: OpenApiResponse(description="Revoked; the next request with it gets 401."), **ERROR_RESPONSES},
    )
    def delete(self, request: Request, id: int) -> Response:
        if not api_token_revoke(user_id=self.user_id, token_id=id):
            raise Http404("No such active token.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiTokenRotateView(_MyTokensView):
    @extend_schema(
        summary="Rotate one of my tokens",
        description="Revokes the token and returns a new key with the same name and a fresh expiry.",
        request=None,
        responses={201: IssuedTokenSerializer, **ERROR_RESPONSES},
    )
    def post(self, request: Request, id: int) -> Response:
        issued = api_token_rotate(user_id=self.user_id, token_id=id)
        if issued is None:
            raise Http404("No such active token.")
        return Response(_issued(issued), status=status.HTTP_201_CREATED)
