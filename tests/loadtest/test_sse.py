"""Reading a generation's event stream the way the contract defines it (docs: api-contract, SSE format)."""

from __future__ import annotations

import json
import time

from locustfiles.sse import EventStreamParser, ServerSentEvent, read_event_stream


def events(*chunks: str) -> list[ServerSentEvent]:
    parser = EventStreamParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_events_split_anywhere_across_reads_come_out_whole() -> None:
    stream = 'event: chunk\ndata: {"text": "Hel"}\n\n: keep-alive\n\nevent: done\ndata: {"status": "succeeded"}\n\n'
    whole = events(stream)
    for cut in range(1, len(stream)):
        assert events(stream[:cut], stream[cut:]) == whole
    assert whole == [
        ServerSentEvent("chunk", '{"text": "Hel"}'),
        ServerSentEvent("done", '{"status": "succeeded"}'),
    ]


def test_multi_line_data_crlf_and_unnamed_events_follow_the_standard() -> None:
    assert events("data: a\r\ndata: b\r\n\r\nevent: x\ndata:c\n\n") == [
        ServerSentEvent("message", "a\nb"),
        ServerSentEvent("x", "c"),
    ]


def sse(*items: tuple[str, dict[str, object]]) -> bytes:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in items).encode()


def read(raw: bytes, pieces: int = 7):  # type: ignore[no-untyped-def]
    size = max(len(raw) // pieces, 1)
    chunks = iter([raw[i : i + size] for i in range(0, len(raw), size)])
    started = time.perf_counter()
    return read_event_stream(chunks, started=started, deadline=started + 60)


def test_a_stream_that_ends_with_done_succeeded_is_a_success_with_its_first_chunk_timed() -> None:
    outcome = read(
        sse(
            ("chunk", {"text": "Über ", "completion_tokens": 1}),
            ("chunk", {"text": "alles", "completion_tokens": 2}),
            ("done", {"status": "succeeded", "finish_reason": "length", "output": "Über alles"}),
        ),
        pieces=13,  # splits the two-byte Ü somewhere: decoding must not break
    )
    assert outcome.ok and outcome.chunks == 2
    assert outcome.first_chunk_ms is not None and outcome.first_chunk_ms <= outcome.total_ms
    assert outcome.done["output"] == "Über alles"


def test_an_error_event_fails_the_stream_with_the_servers_message() -> None:
    outcome = read(sse(("error", {"status": "queued", "message": "generator busy", "retry_after": 2})))
    assert not outcome.ok
    assert outcome.reason == "error event (queued): generator busy"


def test_a_done_event_that_did_not_succeed_fails_the_stream() -> None:
    outcome = read(sse(("chunk", {"text": "a"}), ("done", {"status": "failed"})))
    assert (outcome.ok, outcome.reason) == (False, "done with status 'failed'")


def test_a_stream_closed_before_done_is_a_failure() -> None:
    outcome = read(sse(("chunk", {"text": "a"})))
    assert (outcome.ok, outcome.reason) == (False, "stream closed before the done event")
