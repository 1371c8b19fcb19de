"""The openai backend streams from an OpenAI-compatible server and maps its errors.

The upstream here is a small HTTP server on loopback speaking the streaming
protocol (server-sent events ending in ``data: [DONE]``).
"""

from __future__ import annotations

import grpc
import pytest

from contentgen_service.client import ClientConfig, ContentGenClient, GenerationParams
from contentgen_service.client_errors import ContentGenUnavailable
from contentgen_service.gen.contentgen.v1 import contentgen_pb2 as pb

pytestmark = pytest.mark.slow

UPSTREAM_KEY = "sk-upstream-test-key"


@pytest.fixture
def openai_server(start_server, fake_openai):
    def start(api: str = "chat", **options):
        return start_server(
            backend="openai",
            openai_base_url=fake_openai.base_url,
            openai_model="test-model",
            openai_api=api,
            env={"CONTENTGEN_OPENAI_API_KEY": UPSTREAM_KEY},
            **options,
        )

    return start


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_a_stream_relays_the_upstream_tokens_as_they_arrive(openai_server, fake_openai, auth, make_request, api):
    server = openai_server(api=api)

    messages = list(server.stub().GenerateStream(make_request(max_tokens=5), metadata=auth, timeout=10))

    assert [message.chunk.text for message in messages[:-1]] == [
        "w0",
        " w1",
        " w2",
        " w3",
        " w4",
    ]
    summary = messages[-1].summary
    assert summary.finish_reason == pb.FINISH_REASON_LENGTH
    assert summary.usage.completion_tokens == 5
    assert summary.model == "test-model"
    sent = fake_openai.requests[-1]
    assert sent["path"] == ("/v1/chat/completions" if api == "chat" else "/v1/completions")
    assert sent["authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert sent["body"]["stream"] is True
    assert sent["body"]["max_tokens"] == 5
    assert sent["body"]["model"] == "test-model"


def test_sampling_settings_and_stop_sequences_are_passed_upstream_and_enforced(
    openai_server, fake_openai, auth, make_request
):
    server = openai_server()

    response = server.stub().Generate(
        make_request(max_tokens=8, temperature=0.3, top_p=0.8, seed=99, stop=[" w3"]),
        metadata=auth,
        timeout=10,
    )

    # The fake upstream ignores "stop"; the service still ends before it.
    assert response.text == "w0 w1 w2"
    assert response.finish_reason == pb.FINISH_REASON_STOP
    body = fake_openai.requests[-1]["body"]
    assert (body["temperature"], body["top_p"], body["seed"], body["stop"]) == (
        0.3,
        0.8,
        99,
        [" w3"],
    )


@pytest.mark.parametrize(
    "upstream_status, code",
    [
        (503, grpc.StatusCode.UNAVAILABLE),
        (500, grpc.StatusCode.UNAVAILABLE),
        (429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (400, grpc.StatusCode.INVALID_ARGUMENT),
        (401, grpc.StatusCode.FAILED_PRECONDITION),
        (404, grpc.StatusCode.FAILED_PRECONDITION),
    ],
)
def test_upstream_http_errors_map_to_grpc_codes_with_the_upstream_message(
    openai_server, auth, make_request, upstream_status, code
):
    server = openai_server()

    with pytest.raises(grpc.RpcError) as error:
        server.stub().Generate(make_request(prompt=f"status {upstream_status}"), metadata=auth, timeout=10)

    assert error.value.code() == code
    assert f"HTTP {upstream_status}" in error.value.details()
    assert f"fake upstream refused with {upstream_status}" in error.value.details()


def test_an_unreachable_upstream_is_unavailable(start_server, auth, make_request, free_port):
    server = start_server(
        backend="openai",
        openai_base_url=f"http://127.0.0.1:{free_port()}/v1",
        openai_model="m",
    )

    with pytest.raises(grpc.RpcError) as error:
        server.stub().Generate(make_request(), metadata=auth, timeout=10)

    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "cannot connect to upstream" in error.value.details()


@pytest.mark.parametrize(
    "prompt, message",
    [
        ("midstream-error", "engine crashed"),
        ("truncate", "closed the stream before finishing"),
    ],
)
def test_a_stream_that_fails_midway_delivers_its_tokens_then_unavailable(
    openai_server, auth, make_request, prompt, message
):
    server = openai_server()
    received = []

    with pytest.raises(grpc.RpcError) as error:
        for item in server.stub().GenerateStream(make_request(prompt=prompt), metadata=auth, timeout=10):
            received.append(item.chunk.text)

    assert received == ["w0", " w1"]
    assert error.value.code() == grpc.StatusCode.UNAVAILABLE
    assert message in error.value.details()


def test_cancelling_the_call_closes_the_upstream_stream(openai_server, fake_openai, auth, make_request, wait_until):
    server = openai_server()
    stream = server.stub().GenerateStream(make_request(prompt="slow", max_tokens=200), metadata=auth, timeout=30)
    next(stream)

    stream.cancel()

    wait_until(
        lambda: fake_openai.disconnects == 1,
        what="the upstream to see the connection close",
    )
    wait_until(
        lambda: server.metric("contentgen_generations_interrupted_total", reason="cancelled") == 1,
        what="the server to record the cancellation",
    )


def test_the_client_retries_unavailable_through_the_retry_policy(openai_server, fake_openai, token):
    server = openai_server()
    client = ContentGenClient(ClientConfig(target=server.target, token=token, max_attempts=3))

    with pytest.raises(ContentGenUnavailable):
        client.generate(GenerationParams(request_id="retry-me", user_id=1, prompt="status 503", max_tokens=5))
    client.close()

    attempts = [r for r in fake_openai.requests if r["body"]["messages"][-1]["content"] == "status 503"]
    assert len(attempts) == 3
