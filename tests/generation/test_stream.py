"""Live output over server-sent events, through a real gunicorn (gthread) and a real contentgen server."""

from __future__ import annotations

import http.client
import threading
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.db import connections
from django.test import Client

from apps.content.claims import generation_claim, generation_complete
from apps.content.services import generation_create
from contentgen_service.client import FinishReason, GenerateResult, Usage
from tests.conftest import ALL_DATABASES
from tests.generation.conftest import (
    PACED_MS,
    TOKEN,
    GenerationStack,
    access_log,
    api_client_for,
    completion_events,
    generation_row,
    parse_sse,
    wait_for_status,
)
from tests.support import wait_until

pytestmark = pytest.mark.django_db(databases=ALL_DATABASES, transaction=True)


@pytest.fixture
def fay(make_user: Any) -> Any:
    return make_user(1040, "fay")  # shard2


def api_token(user: Any) -> str:
    from apps.security.tokens import api_token_create

    return api_token_create(user_id=user.pk, name="test").key


class EventReader:
    """Reads server-sent events one at a time from a live HTTP response."""

    def __init__(self, base_url: str, path: str, token: str) -> None:
        parts = urlsplit(base_url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.connection.request("GET", path, headers={"Authorization": f"Token {token}", "Accept": "text/event-stream"})
        self.response = self.connection.getresponse()

    def next_event(self) -> tuple[str, dict[str, Any]]:
        block = b""
        while True:
            line = self.response.readline()
            assert line, "the stream ended before the next event"
            if line == b"\n":
                if b"data: " in block:
                    return parse_sse(block + b"\n")[0]
                block = b""  # a comment
                continue
            block += line

    def events_until_end(self) -> list[tuple[str, dict[str, Any]]]:
        events = []
        while not events or events[-1][0] == "chunk":
            events.append(self.next_event())
        return events

    def hang_up(self) -> None:
        self.connection.sock.shutdown(2)
        self.connection.close()


@pytest.mark.slow
def test_a_stream_sends_several_chunks_before_done_and_stores_what_it_sent(stack: GenerationStack, fay: Any) -> None:
    stack.server(token_interval_ms=PACED_MS)
    app = stack.app_server()
    generation = generation_create(user_id=fay.id, prompt="The socket module", max_tokens=20, job_delay=None)

    reader = EventReader(app.url, f"/api/v1/generations/{generation.id}/stream/", api_token(fay))
    events = reader.events_until_end()

    assert reader.response.status == 200
    assert reader.response.getheader("Content-Type").startswith("text/event-stream")
    assert reader.response.getheader("X-Accel-Buffering") == "no"
    chunks = [data for name, data in events if name == "chunk"]
    assert len(chunks) > 1
    assert [chunk["completion_tokens"] for chunk in chunks] == sorted(chunk["completion_tokens"] for chunk in chunks)
    name, done = events[-1]
    assert name == "done" and done["status"] == "succeeded"
    assert done["output"] == "".join(chunk["text"] for chunk in chunks)
    assert done["usage"]["completion_tokens"] == 20 and done["usage"]["time_to_first_token_ms"] > 0
    row = generation_row(fay.id, generation.id)
    assert row["status"] == "succeeded" and row["output"] == done["output"] and row["claim_token"] is None
    assert completion_events(fay.id, generation.id) == 1


@pytest.mark.slow
def test_hanging_up_cancels_the_service_call_and_a_background_job_finishes_the_same_text(
    stack: GenerationStack, fay: Any
) -> None:
    server = stack.server(token_interval_ms=PACED_MS)
    app = stack.app_server()
    stack.worker()
    generation = generation_create(user_id=fay.id, prompt="The socket module", max_tokens=50, job_delay=None)

    reader = EventReader(app.url, f"/api/v1/generations/{generation.id}/stream/", api_token(fay))
    seen = [reader.next_event(), reader.next_event()]
    reader.hang_up()

    # The service saw the stream cancelled before it finished: its work stopped there.
    wait_until(
        lambda: server.metric("contentgen_generations_interrupted_total", reason="cancelled") == 1,
        what="the server to record the cancelled stream",
    )
    cancelled = wait_until(lambda: access_log(server, "GenerateStream"), what="the stream's access-log line")
    assert cancelled[0]["status"] == "CANCELLED" and cancelled[0]["tokens"] < 50
    # The generation went back to the queue and a job completed it: the text the reader saw is its start.
    row = wait_for_status(fay.id, generation.id, "succeeded", "failed")
    assert row["status"] == "succeeded" and row["completion_tokens"] == 50
    assert row["output"].startswith("".join(data["text"] for _, data in seen))
    assert row["attempts"] == 1  # the viewer leaving is not a failed attempt
    assert [entry["status"] for entry in access_log(server, "Generate")] == ["OK"]
    assert completion_events(fay.id, generation.id) == 1


def test_a_stream_of_a_generation_running_elsewhere_waits_and_sends_the_final_text(fay: Any, settings: Any) -> None:
    settings.CONTENTGEN = {**settings.CONTENTGEN, "STREAM_POLL_SECONDS": 0.05}
    generation = generation_create(user_id=fay.id, prompt="slow elsewhere", job_delay=None)
    claimed = generation_claim(user_id=fay.id, generation_id=generation.id)
    assert claimed is not None
    client = Client()
    client.force_login(fay)
    response = client.get(f"/generations/{generation.id}/stream/")
    collected: list[bytes] = []

    def read() -> None:
        try:
            collected.extend(response.streaming_content)
        finally:
            connections.close_all()  # this thread's own database connections

    reading = threading.Thread(target=read)
    reading.start()

    generation_complete(
        claim=claimed[0],
        result=GenerateResult(
            str(generation.request_id), "Finished elsewhere.", FinishReason.STOP, Usage(3, 3, 1.5, 9.0), "m"
        ),
    )
    reading.join(timeout=30)

    assert not reading.is_alive()
    events = parse_sse(b"".join(collected))
    assert [name for name, _ in events] == ["chunk", "done"]
    assert events[0][1]["text"] == "Finished elsewhere." and events[1][1]["output"] == "Finished elsewhere."


def test_the_page_stream_needs_a_login(fay: Any) -> None:
    generation = generation_create(user_id=fay.id, prompt="private", job_delay=None)
    assert Client().get(f"/generations/{generation.id}/stream/").status_code == 403
    assert api_client_for(fay).get(f"/generations/{generation.id}/stream/").status_code == 403  # no session


@pytest.mark.slow
def test_a_wrong_token_between_django_and_the_service_fails_the_stream_with_a_clear_message(
    stack: GenerationStack, fay: Any, settings: Any
) -> None:
    stack.server(token="a-different-token-0123456789")
    generation = generation_create(user_id=fay.id, prompt="The socket module", job_delay=None)
    assert TOKEN != "a-different-token-0123456789"

    response = api_client_for(fay).get(f"/api/v1/generations/{generation.id}/stream/")
    events = parse_sse(b"".join(response.streaming_content))

    assert [name for name, _ in events] == ["error"]
    assert events[0][1]["status"] == "failed"
    assert "Authentication with the generation service failed" in events[0][1]["message"]
    row = generation_row(fay.id, generation.id)
    assert row["status"] == "failed" and row["error"] == events[0][1]["message"]
