"""CloudFront invalidations: the rare path.

Hashed static names and versioned media keys never need invalidating (a new
version is a new URL). What remains is the occasional unhashed path: an
original referenced from outside (an e-mail, a partner site), a file uploaded
by hand, or the manifest of a CDN that ignored ``no-cache``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from .backends import is_hashed_name

# CloudFront limits: paths per invalidation request (and in progress at once), of which wildcard paths.
MAX_PATHS = 3000
MAX_WILDCARD_PATHS = 15
MAX_PATH_LENGTH = 4000


class InvalidationError(Exception):
    """An invalidation that cannot be requested or did not finish; the message says what to do."""


@dataclass(frozen=True)
class InvalidationStatus:
    distribution_id: str
    invalidation_id: str
    status: str

    @property
    def completed(self) -> bool:
        # CloudFront answers "InProgress" / "Completed"; compare loosely, some emulators shout.
        return self.status.lower() == "completed"


def invalidation_paths_clean(paths: Sequence[str]) -> list[str]:
    """Validate CDN paths (``/static/css/app.css``, ``/exports/*``); return them without duplicates, in order."""
    cleaned: list[str] = []
    for raw in paths:
        path = raw.strip()
        if not path.startswith("/"):
            raise InvalidationError(f"Path {raw!r} must start with '/', for example /{path.lstrip('/') or 'static/*'}.")
        if any(ch.isspace() or ord(ch) < 32 for ch in path):
            raise InvalidationError(f"Path {raw!r} contains spaces or control characters; percent-encode them (%20).")
        if "*" in path[:-1]:
            raise InvalidationError(
                f"Path {raw!r} has a '*' before its end; CloudFront allows it only as the last character."
            )
        if len(path) > MAX_PATH_LENGTH:
            raise InvalidationError(f"Path {raw[:60]!r}... is longer than {MAX_PATH_LENGTH} characters.")
        if path not in cleaned:
            cleaned.append(path)
    if not cleaned:
        raise InvalidationError("Name at least one path to invalidate, for example /static/robots.txt.")
    if len(cleaned) > MAX_PATHS:
        raise InvalidationError(
            f"{len(cleaned)} paths is more than CloudFront's {MAX_PATHS} per request; use a wildcard."
        )
    wildcards = sum(1 for path in cleaned if path.endswith("*"))
    if wildcards > MAX_WILDCARD_PATHS:
        raise InvalidationError(
            f"{wildcards} wildcard paths is more than CloudFront's {MAX_WILDCARD_PATHS} in progress at once; merge them."
        )
    return cleaned


def paths_never_stale(paths: Sequence[str]) -> list[str]:
    """The paths that are content-hashed, so a CDN can never hold a stale copy of them."""
    return [path for path in paths if not path.endswith("*") and is_hashed_name(path)]


def caller_reference_for(paths: Sequence[str]) -> str:
    """A unique reference per request (CloudFront treats a repeated reference as the same request)."""
    digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:12]
    return f"qq-{time.time_ns()}-{digest}"


def cloudfront_client() -> Any:
    """A CloudFront client from boto3's usual configuration (``AWS_ENDPOINT_URL_CLOUDFRONT`` is honoured).

    CloudFront is a global service whose API is signed for us-east-1, whatever region the app runs in.
    """
    import boto3

    return boto3.client("cloudfront", region_name="us-east-1")


def invalidation_create(
    *, client: Any, distribution_id: str, paths: Sequence[str], caller_reference: str
) -> InvalidationStatus:
    """Ask CloudFront to drop ``paths`` from every edge cache of ``distribution_id``."""
    try:
        answer = client.create_invalidation(
            DistributionId=distribution_id,
            InvalidationBatch={
                "Paths": {"Quantity": len(paths), "Items": list(paths)},
                "CallerReference": caller_reference,
            },
        )
    except (BotoCoreError, ClientError) as exc:
        raise InvalidationError(describe_aws_error(exc, distribution_id)) from exc
    invalidation = answer["Invalidation"]
    return InvalidationStatus(distribution_id, invalidation["Id"], invalidation["Status"])


def invalidation_status(*, client: Any, distribution_id: str, invalidation_id: str) -> InvalidationStatus:
    try:
        answer = client.get_invalidation(DistributionId=distribution_id, Id=invalidation_id)
    except (BotoCoreError, ClientError) as exc:
        raise InvalidationError(describe_aws_error(exc, distribution_id)) from exc
    return InvalidationStatus(distribution_id, invalidation_id, answer["Invalidation"]["Status"])


def invalidation_wait(
    *,
    client: Any,
    started: InvalidationStatus,
    timeout: float,
    poll_interval: float,
    on_poll: Callable[[InvalidationStatus, float], None],
    should_stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep,
) -> InvalidationStatus:
    """Poll until the invalidation completes; raise ``InvalidationError`` on timeout or when told to stop."""
    began = time.monotonic()
    current = started
    while not current.completed:
        elapsed = time.monotonic() - began
        if elapsed >= timeout:
            raise InvalidationError(
                f"Invalidation {current.invalidation_id} is still {current.status} after {elapsed:.0f}s; it carries on "
                f"at CloudFront. Check later: aws cloudfront get-invalidation --distribution-id "
                f"{current.distribution_id} --id {current.invalidation_id}"
            )
        if should_stop():
            raise InvalidationError(
                f"Stopped waiting; invalidation {current.invalidation_id} carries on at CloudFront ({current.status})."
            )
        sleep(min(poll_interval, max(timeout - elapsed, 0)))
        current = invalidation_status(
            client=client, distribution_id=current.distribution_id, invalidation_id=current.invalidation_id
        )
        on_poll(current, time.monotonic() - began)
    return current


def describe_aws_error(exc: BaseException, distribution_id: str) -> str:
    """An AWS failure as a sentence saying what to fix."""
    if isinstance(exc, NoCredentialsError):
        return (
            "No AWS credentials found. Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), "
            "or run where an instance/task role allows cloudfront:CreateInvalidation."
        )
    if isinstance(exc, EndpointConnectionError):
        return f"CloudFront could not be reached ({exc}). Check the network, or AWS_ENDPOINT_URL_CLOUDFRONT if set."
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        if code == "NoSuchDistribution":
            return (
                f"CloudFront distribution {distribution_id!r} does not exist. Set QQ_CLOUDFRONT_DISTRIBUTION_ID "
                "(or --distribution-id) to the ID shown in the CloudFront console, e.g. E2QWRUHAPOMQZL."
            )
        if code in {"AccessDenied", "AccessDeniedException"}:
            return (
                f"AWS refused the request ({message}). The credentials need cloudfront:CreateInvalidation and "
                f"cloudfront:GetInvalidation on distribution {distribution_id}."
            )
        if code == "TooManyInvalidationsInProgress":
            return (
                f"Distribution {distribution_id} already has the most invalidations CloudFront allows in progress; "
                "wait for them to finish (a few minutes) and run the command again."
            )
        if code in {"InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken"}:
            return f"AWS did not accept the credentials ({code}: {message}). Check AWS_ACCESS_KEY_ID and the secret."
        return f"CloudFront refused the request ({code or 'error'}: {message or exc})."
    return f"The CloudFront request failed: {exc}"
