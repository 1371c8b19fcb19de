"""Server-sent events: an incremental parser, and watching one generation's stream as a Locust user.

A watched stream is reported to Locust as three entries, so QA can tell
queueing from generation from transport:

* ``stream: connect (<kind>)``: until the response headers (the HTTP request itself);
* ``stream: first chunk (<kind>)``: from the request to the first ``chunk`` event;
* ``stream: complete (<kind>)``: from the request to ``done``; a failure when an
  opened stream ends any other way (``error`` event, closed early, too slow).

An HTTP error or a response that is not an event stream fails the ``connect``
entry instead, so each attempt counts at most one failure.
"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent

if TYPE_CHECKING:
    from locust.contrib.fasthttp import FastHttpSession
    from locust.env import Environment

STREAM_DEADLINE_SECONDS = 120.0


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str

    def json(self) -> dict[str, Any]:
        value = json.loads(self.data) if self.data else {}
        return value if isinstance(value, dict) else {"value": value}


@dataclass
class EventStreamParser:
    """Feed text as it arrives; complete events come out (the format of the HTML living standard)."""

    _buffer: str = ""
    _event: str = ""
    _data: list[str] = field(default_factory=list)

    def feed(self, text: str) -> Iterator[ServerSentEvent]:
        self._buffer += text.replace("\r\n", "\n").replace("\r", "\n")
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            if not line:
                if self._data or self._event:
                    yield ServerSentEvent(self._event or "message", "\n".join(self._data))
                self._event, self._data = "", []
                continue
            if line.startswith(":"):
                continue  # a comment: keep-alive
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)


@dataclass
class StreamOutcome:
    ok: bool
    first_chunk_ms: float | None
    total_ms: float
    received_bytes: int
    chunks: int
    reason: str = ""
    done: dict[str, Any] = field(default_factory=dict)


def read_event_stream(chunks: Iterator[bytes], *, started: float, deadline: float) -> StreamOutcome:
    """Read events until ``done`` (success) or ``error`` / the end / the deadline (failure)."""
    parser = EventStreamParser()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    first_chunk_ms: float | None = None
    received = count = 0

    def outcome(ok: bool, reason: str = "", done: dict[str, Any] | None = None) -> StreamOutcome:
        total = (time.perf_counter() - started) * 1000
        return StreamOutcome(ok, first_chunk_ms, total, received, count, reason, done or {})

    for raw in chunks:
        received += len(raw)
        for event in parser.feed(decoder.decode(raw)):
            if event.event == "chunk":
                count += 1
                if first_chunk_ms is None:
                    first_chunk_ms = (time.perf_counter() - started) * 1000
            elif event.event == "done":
                payload = event.json()
                status = payload.get("status", "")
                if status != "succeeded":
                    return outcome(False, f"done with status {status!r}", payload)
                return outcome(True, done=payload)
            elif event.event == "error":
                payload = event.json()
                return outcome(False, f"error event ({payload.get('status')}): {payload.get('message', '')}")
        if time.perf_counter() > deadline:
            return outcome(False, f"no done event within {deadline - started:.0f}s")
    return outcome(False, "stream closed before the done event")


class StreamFailure(Exception):
    """A stream that did not end with ``done``; its message is what QA sees in the Failures tab."""


def watch_stream(
    client: FastHttpSession,
    environment: Environment,
    url: str,
    *,
    kind: str,
    headers: dict[str, str] | None = None,
) -> StreamOutcome | None:
    """Open ``url`` as an event stream, read it to the end and report it (see the module docstring)."""
    started = time.perf_counter()
    request_headers = {"Accept": "text/event-stream", **(headers or {})}
    with client.get(
        url, name=f"stream: connect ({kind})", headers=request_headers, stream=True, catch_response=True
    ) as response:
        content_type = (response.headers or {}).get("content-type", "") if response.status_code else ""
        if response.status_code != 200 or not content_type.startswith("text/event-stream"):
            reason = f"HTTP {response.status_code} {content_type or 'no content type'}"
            response.failure(reason)
            return None
        deadline = started + STREAM_DEADLINE_SECONDS
        try:
            # The deadline also bounds a server that goes silent (no chunk arrives to check it on).
            with gevent.Timeout(STREAM_DEADLINE_SECONDS):
                outcome = read_event_stream(
                    response.iter_content(chunk_size=4096, decode_content=False), started=started, deadline=deadline
                )
        except (gevent.Timeout, OSError) as exc:
            reason = (
                f"no done event within {STREAM_DEADLINE_SECONDS:.0f}s" if isinstance(exc, gevent.Timeout) else str(exc)
            )
            outcome = StreamOutcome(
                False, None, (time.perf_counter() - started) * 1000, 0, 0, f"stream broke: {reason}"
            )
    # A stream that opened but did not finish fails once, on its "complete" entry (not on "connect").
    if outcome.first_chunk_ms is not None:
        _fire_ms(environment, f"stream: first chunk ({kind})", outcome.first_chunk_ms, 0, None)
    _fire_ms(
        environment,
        f"stream: complete ({kind})",
        outcome.total_ms,
        outcome.received_bytes,
        None if outcome.ok else StreamFailure(outcome.reason),
    )
    return outcome


def _fire_ms(environment: Environment, name: str, elapsed_ms: float, length: int, exception: Exception | None) -> None:
    environment.events.request.fire(
        request_type="SSE",
        name=name,
        response_time=elapsed_ms,
        response_length=length,
        exception=exception,
        context={},
    )
