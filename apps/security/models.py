"""API tokens: named, expiring, revocable; only a SHA-256 digest of each key is stored (control database)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class ApiToken(models.Model):
    """One API key of one user. The key itself is shown once, at creation, and never stored.

    Keys are 256 random bits, so a single fast hash is enough to make a stolen
    table useless (a slow password hash protects guessable secrets; these are
    not guessable). ``prefix`` (the key's first characters) lets a user tell
    keys apart in the list.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=64)
    prefix = models.CharField(max_length=12)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"], name="apitoken_user_created")]

    def __str__(self) -> str:
        return f"API token {self.prefix}… ({self.name}) of user {self.user_id}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()
