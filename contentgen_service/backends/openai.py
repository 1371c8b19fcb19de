"""An adapter for any OpenAI-compatible HTTP server (vLLM, Ollama, hosted APIs).

It POSTs to ``/chat/completions`` (or ``/completions``) under the configured
base URL with ``"stream": true`` and reads the server-sent events until
``data: [DONE]``. Only the standard library is used.
"""

from __future__ import annotations

import http.client
import json
import re
import ssl
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import grpc

from contentgen_service.backends.base import BackendError, GenerationRequest, StopSignal

Api = Literal["chat", "completions"]
_MAX_ERROR_BODY = 4096
_APPROXIMATE_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class OpenAISettings:
    """Where the upstream server is and how long to wait for it."""

    base_url: str
    """Up to and including the API version, e.g. ``http://127.0.0.1:8000/v1``."""
    model: str
    api_key: str | None = None
    api: Api = "chat"
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    """Longest silence allowed between two streamed events."""


def status_for_http_error(status: int) -> grpc.StatusCode:
    """Map an upstream HTTP status to the gRPC status our client should see.

    Throttling and server-side failures are retryable (RESOURCE_EXHAUSTED,
    UNAVAILABLE); a request the upstream refuses is INVALID_ARGUMENT; a wrong
    key, model or URL is this service's configuration problem
    (FAILED_PRECONDITION), not the caller's credentials.
    """
    if status == 429:
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    if status in (400, 413, 422):
        return grpc.StatusCode.INVALID_ARGUMENT
    if status in (401, 403, 404):
        return grpc.StatusCode.FAILED_PRECONDITION
    if status == 408 or status >= 500:
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


def _upstream_message(body: bytes) -> str:
    try:
        payload = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:300]
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    return json.dumps(payload)[:300]


class OpenAICompatibleGenerator:
    """Streams completions from an OpenAI-compatible endpoint.

    Each streamed delta counts as one token (vLLM and Ollama send one token per
    event); prompt tokens are estimated with a word/punctuation count, since
    the real tokenizer lives upstream.
    """

    def __init__(self, settings: OpenAISettings) -> None:
        parts = urlsplit(settings.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base URL must look like http://host:port/v1, got {settings.base_url!r}")
        self._settings = settings
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._path = parts.path.rstrip("/") + ("/chat/completions" if settings.api == "chat" else "/completions")

    @property
    def model_name(self) -> str:
        """The upstream model name."""
        return self._settings.model

    def count_tokens(self, text: str) -> int:
        """Estimate the token count of ``text`` (words and punctuation)."""
        return len(_APPROXIMATE_TOKEN.findall(text))

    def request_body(self, request: GenerationRequest) -> dict[str, Any]:
        """Return the JSON body sent upstream for ``request``."""
        body: dict[str, Any] = {
            "model": self._settings.model,
            "stream": True,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "seed": request.seed % 2**31,  # some servers reject seeds beyond int32
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if self._settings.api == "chat":
            body["messages"] = [{"role": "user", "content": request.prompt}]
        else:
            body["prompt"] = request.prompt
        return body

    def generate(self, request: GenerationRequest, stop: StopSignal) -> Generator[str, None, None]:
        """Yield the upstream's streamed text deltas (see TextGenerator).

        Cancellation is noticed between events: an upstream that streams tokens
        steadily stops being read within one token's time.
        """
        connection = self._connect()
        try:
            response = self._post(connection, request)
            finished = False
            for raw in response:
                if stop.is_set():
                    return
                line = raw.decode("utf-8", "replace").strip()
                if not line.startswith("data:"):
                    continue  # blank separators, comments, "event:" and "id:" fields
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    return
                text, finish_reason = self._parse_event(data)
                finished = finished or finish_reason is not None
                if text:
                    yield text
            if not finished:
                raise BackendError(
                    f"upstream {self._settings.base_url} closed the stream before finishing",
                    status=grpc.StatusCode.UNAVAILABLE,
                )
        except TimeoutError:
            raise BackendError(
                f"upstream {self._settings.base_url} sent nothing for "
                f"{self._settings.read_timeout:g} s "
                "(CONTENTGEN_OPENAI_READ_TIMEOUT)",
                status=grpc.StatusCode.UNAVAILABLE,
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise BackendError(
                f"connection to upstream {self._settings.base_url} failed: {exc}",
                status=grpc.StatusCode.UNAVAILABLE,
            ) from None
        finally:
            connection.close()

    def _connect(self) -> http.client.HTTPConnection:
        settings = self._settings
        connection: http.client.HTTPConnection
        if self._https:
            connection = http.client.HTTPSConnection(
                self._host,
                self._port,
                timeout=settings.connect_timeout,
                context=ssl.create_default_context(),
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=settings.connect_timeout)
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            raise BackendError(
                f"cannot connect to upstream {settings.base_url} within {settings.connect_timeout:g} s: {exc}",
                status=grpc.StatusCode.UNAVAILABLE,
            ) from None
        if connection.sock is not None:
            connection.sock.settimeout(settings.read_timeout)
        return connection

    def _post(self, connection: http.client.HTTPConnection, request: GenerationRequest) -> http.client.HTTPResponse:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self._settings.api_key:
            headers["Authorization"] = f"Bearer {self._settings.api_key}"
        connection.request(
            "POST",
            self._path,
            body=json.dumps(self.request_body(request)).encode(),
            headers=headers,
        )
        response = connection.getresponse()
        if response.status != 200:
            message = _upstream_message(response.read(_MAX_ERROR_BODY))
            raise BackendError(
                f"upstream {self._settings.base_url} answered HTTP {response.status}: {message}",
                status=status_for_http_error(response.status),
            )
        return response

    def _parse_event(self, data: str) -> tuple[str, str | None]:
        try:
            event = json.loads(data)
        except ValueError:
            raise BackendError(
                f"upstream sent an event that is not JSON: {data[:200]!r}",
                status=grpc.StatusCode.INTERNAL,
            ) from None
        if not isinstance(event, dict):
            raise BackendError(
                f"upstream sent an unexpected event: {data[:200]!r}",
                status=grpc.StatusCode.INTERNAL,
            )
        if "error" in event:
            # vLLM reports failures that happen mid-stream as an error event.
            raise BackendError(
                f"upstream failed while streaming: {_upstream_message(data.encode())}",
                status=grpc.StatusCode.UNAVAILABLE,
            )
        choices = event.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        if self._settings.api == "chat":
            delta = choice.get("delta") or {}
            text = delta.get("content") if isinstance(delta, dict) else None
        else:
            text = choice.get("text")
        return (text if isinstance(text, str) else ""), choice.get("finish_reason")
