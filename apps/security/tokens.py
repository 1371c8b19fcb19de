"""API token lifecycle: create, authenticate, list, revoke, rotate. Writes and reads of ``ApiToken``.

A key looks like ``qq_<43 url-safe characters>``; the database keeps its
SHA-256 digest and a short prefix. Looking a key up by its digest needs no
constant-time comparison: an attacker who times the lookup learns about the
digest of their own guess, never about a stored key.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from .models import ApiToken

logger = logging.getLogger(__name__)

KEY_PREFIX = "qq_"
PREFIX_CHARS = 10  # "qq_" and 7 characters of the secret: enough to tell keys apart, useless for guessing
NAME_MAX_CHARS = 64
# last_used_at is written at most this often per token, so busy clients do not write on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class TokenRejected(Exception):
    """A presented key that does not authenticate; the message says why and what to do."""


@dataclass(frozen=True)
class IssuedToken:
    token: ApiToken
    key: str  # shown to the user once


def token_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_lifetime() -> timedelta:
    return timedelta(days=settings.QQ_API_TOKEN_DAYS)


def api_token_create(*, user_id: int, name: str, lifetime: timedelta | None = None) -> IssuedToken:
    """A new key for the user, valid for ``lifetime`` (``QQ_API_TOKEN_DAYS`` by default)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user_id=user_id,
        name=(name.strip() or "API token")[:NAME_MAX_CHARS],
        prefix=key[:PREFIX_CHARS],
        digest=token_digest(key),
        expires_at=timezone.now() + (lifetime or token_lifetime()),
    )
    logger.info("API token %s created for user %s", token.prefix, user_id)
    return IssuedToken(token, key)


def api_token_authenticate(*, key: str) -> ApiToken:
    """The active token for ``key``; raises ``TokenRejected`` (unknown, revoked or expired) with the fix."""
    if not key.isascii() or not key.isprintable() or len(key) > 200:
        raise TokenRejected("Invalid token: it has characters no token contains. Copy it again from your account page.")
    token = ApiToken.objects.select_related("user").filter(digest=token_digest(key)).first()
    if token is None or not token.user.is_active:
        raise TokenRejected("Invalid token. Create a new one on your account page or with POST /api/v1/auth/token/.")
    now = timezone.now()
    if token.revoked_at is not None:
        raise TokenRejected(
            f"Token {token.prefix}… was revoked at {token.revoked_at:%Y-%m-%d %H:%M} UTC; create a new one."
        )
    if token.expires_at <= now:
        raise TokenRejected(
            f"Token {token.prefix}… expired at {token.expires_at:%Y-%m-%d %H:%M} UTC; create a new one."
        )
    if token.last_used_at is None or token.last_used_at < now - LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def api_tokens_of(*, user_id: int) -> QuerySet[ApiToken]:
    """The user's tokens that still work, newest first."""
    return ApiToken.objects.filter(user_id=user_id, revoked_at__isnull=True, expires_at__gt=timezone.now()).order_by(
        "-created_at", "-id"
    )


def api_token_revoke(*, user_id: int, token_id: int) -> bool:
    """Revoke one of the user's tokens; False when the user has no such active token. Takes effect at once."""
    revoked = api_tokens_of(user_id=user_id).filter(pk=token_id).update(revoked_at=timezone.now()) == 1
    if revoked:
        logger.info("API token %s of user %s revoked", token_id, user_id)
    return revoked


def api_token_rotate(*, user_id: int, token_id: int) -> IssuedToken | None:
    """Replace one of the user's tokens by a new key of the same name and lifetime; None when there is none."""
    old = api_tokens_of(user_id=user_id).filter(pk=token_id).first()
    if old is None or not api_token_revoke(user_id=user_id, token_id=token_id):
        return None
    return api_token_create(user_id=user_id, name=old.name)


def api_tokens_revoke_all(*, user_id: int, when: datetime | None = None) -> int:
    return api_tokens_of(user_id=user_id).update(revoked_at=when or timezone.now())
