"""The S3-compatible server the storage tests talk to: moto's server, plus S3's presigned-URL checks.

moto 5.2.5 serves an existing object to any URL that carries a signature,
whether the signature is right and whether the URL has expired or not. S3
itself refuses both with 403. ``PresignedUrlGate`` adds exactly those checks
(AWS Signature Version 4, query-string form) in front of moto, so the tests
can show that a link stops working when it should. Everything else (buckets,
objects, headers, ACLs, CloudFront) is moto's.

Run as ``python tests/storage/s3server.py --access-key K --secret-key S``;
it listens on a free loopback port and prints the port on its first line.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import make_server

MAX_EXPIRES = 7 * 24 * 3600
ALGORITHM = "AWS4-HMAC-SHA256"


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _signature(secret: str, scope: list[str], string_to_sign: str) -> str:
    date, region, service, terminal = scope
    key = _hmac(("AWS4" + secret).encode(), date)
    for part in (region, service, terminal):
        key = _hmac(key, part)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


class PresignedUrlGate:
    """WSGI middleware: refuse presigned requests with a wrong signature or past their expiry, as S3 does."""

    def __init__(self, app: Callable[..., Iterable[bytes]], credentials: dict[str, str]) -> None:
        self.app = app
        self.credentials = credentials

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        query = environ.get("QUERY_STRING", "")
        if "X-Amz-Signature=" in query:
            problem = self.problem(environ, query)
            if problem is not None:
                code, message = problem
                body = (
                    f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                    f"<Message>{message}</Message></Error>"
                ).encode()
                start_response(
                    "403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))]
                )
                return [body]
        return self.app(environ, start_response)

    def problem(self, environ: dict[str, Any], query: str) -> tuple[str, str] | None:
        pairs = [pair.partition("=") for pair in query.split("&") if pair]
        params = {key: value for key, _, value in pairs}
        if params.get("X-Amz-Algorithm") != ALGORITHM:
            return "AuthorizationQueryParametersError", "Only AWS4-HMAC-SHA256 is supported."
        credential = params.get("X-Amz-Credential", "").replace("%2F", "/")
        access_key, _, scope_text = credential.partition("/")
        scope = scope_text.split("/")
        secret = self.credentials.get(access_key)
        if secret is None or len(scope) != 4:
            return "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."
        try:
            signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
            expires = int(params["X-Amz-Expires"])
        except (KeyError, ValueError):
            return "AuthorizationQueryParametersError", "X-Amz-Date and X-Amz-Expires are required."
        if not 1 <= expires <= MAX_EXPIRES:
            return "AuthorizationQueryParametersError", "X-Amz-Expires must be between 1 and 604800 seconds."
        signed_headers = params.get("X-Amz-SignedHeaders", "").replace("%3B", ";").split(";")
        headers = {
            name: (environ.get("HTTP_" + name.upper().replace("-", "_")) or "").strip() for name in signed_headers
        }
        raw_path = environ.get("RAW_URI", environ.get("PATH_INFO", "/")).split("?", 1)[0]
        canonical_query = "&".join(
            f"{key}={value}" for key, value in sorted((k, v) for k, _, v in pairs if k != "X-Amz-Signature")
        )
        canonical_request = "\n".join(
            [
                environ["REQUEST_METHOD"],
                raw_path,
                canonical_query,
                "".join(f"{name}:{value}\n" for name, value in headers.items()),
                ";".join(signed_headers),
                "UNSIGNED-PAYLOAD",
            ]
        )
        string_to_sign = "\n".join(
            [ALGORITHM, params["X-Amz-Date"], scope_text, hashlib.sha256(canonical_request.encode()).hexdigest()]
        )
        if not hmac.compare_digest(_signature(secret, scope, string_to_sign), params["X-Amz-Signature"]):
            return (
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if datetime.now(UTC) > signed_at + timedelta(seconds=expires):
            return "AccessDenied", "Request has expired"
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--access-key", required=True)
    parser.add_argument("--secret-key", required=True)
    args = parser.parse_args(argv)
    app = PresignedUrlGate(DomainDispatcherApplication(create_backend_app), {args.access_key: args.secret_key})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    sys.stdout.write(f"{server.port}\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
