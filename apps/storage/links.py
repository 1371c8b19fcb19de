"""Signed, expiring links to local media: the same contract as S3 presigned URLs, for ``make run``.

A link names the file, the moment it stops working and an HMAC of both
(keyed by ``SECRET_KEY``). Anyone holding it may download the file until it
expires, exactly like a presigned URL; nobody can forge or extend one.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from django.core.signing import Signer
from django.urls import reverse
from django.utils.crypto import constant_time_compare

_SALT = "apps.storage.links.media"


class MediaLinkError(Exception):
    """A media link that must not be honoured."""


class MediaLinkExpired(MediaLinkError):
    pass


class MediaLinkForged(MediaLinkError):
    pass


def _signature(name: str, expires: int) -> str:
    return Signer(salt=_SALT).signature(f"{name}\n{expires}")


def media_link_sign(*, name: str, expire_seconds: int, now: float | None = None) -> str:
    """A site-relative URL that serves ``name`` for ``expire_seconds`` from now."""
    expires = int(now if now is not None else time.time()) + expire_seconds
    query = urlencode({"expires": expires, "signature": _signature(name, expires)})
    return f"{reverse('storage:media', kwargs={'name': name})}?{query}"


def media_link_verify(*, name: str, expires: str, signature: str, now: float | None = None) -> int:
    """Check a link's parts; return the seconds it stays valid, or raise MediaLinkForged / MediaLinkExpired."""
    try:
        expires_at = int(expires)
    except ValueError:
        raise MediaLinkForged("The link's expiry is not a number.") from None
    if not constant_time_compare(signature, _signature(name, expires_at)):
        raise MediaLinkForged("The link's signature does not match.")
    remaining = expires_at - int(now if now is not None else time.time())
    if remaining < 0:
        raise MediaLinkExpired("The link has expired.")
    return remaining
