"""Generate and GenerateStream against a real server process."""

from __future__ import annotations

import grpc
import pytest

from contentgen_service.gen.contentgen.v1 import contentgen_pb2 as pb

pytestmark = pytest.mark.slow


def test_generate_returns_text_and_usage(shared_server, auth, make_request):
    response = shared_server.stub().Generate(make_request(max_tokens=20, seed=7), metadata=auth, timeout=10)

    assert response.request_id == "req-1"
    assert response.text.strip()
    assert response.finish_reason == pb.FINISH_REASON_LENGTH
    assert response.usage.prompt_tokens == 3  # "The socket module"
    assert response.usage.completion_tokens == 20
    assert 0 < response.usage.time_to_first_token_ms <= response.usage.total_ms
    assert response.model == "ngram-3"


def test_stream_delivers_several_chunks_before_the_summary(shared_server, auth, make_request):
    messages = list(shared_server.stub().GenerateStream(make_request(max_tokens=12), metadata=auth, timeout=10))

    kinds = [message.WhichOneof("event") for message in messages]
    assert kinds[-1] == "summary"
    assert kinds[:-1] == ["chunk"] * (len(messages) - 1)
    assert len(messages) - 1 > 1
    chunks = [message.chunk for message in messages[:-1]]
    assert [chunk.completion_tokens for chunk in chunks] == sorted(chunk.completion_tokens for chunk in chunks)
    assert sum(chunk.tokens for chunk in chunks) == messages[-1].summary.usage.completion_tokens == 12


def test_stream_and_unary_produce_the_same_text_for_the_same_request(shared_server, auth, make_request):
    request = make_request(max_tokens=30, seed=11, temperature=0.9)
    unary = shared_server.stub().Generate(request, metadata=auth, timeout=10)
    streamed = shared_server.stub().GenerateStream(request, metadata=auth, timeout=10)

    assert "".join(message.chunk.text for message in streamed if message.HasField("chunk")) == unary.text


def test_the_same_seed_and_prompt_always_give_the_same_text(shared_server, auth, make_request):
    texts = {
        shared_server.stub().Generate(make_request(request_id=f"r{i}", seed=1234), metadata=auth, timeout=10).text
        for i in range(3)
    }

    assert len(texts) == 1


def test_different_seeds_give_different_texts(shared_server, auth, make_request):
    texts = {
        shared_server.stub().Generate(make_request(seed=seed, max_tokens=30), metadata=auth, timeout=10).text
        for seed in range(5)
    }

    assert len(texts) == 5


def test_the_prompt_steers_the_continuation(shared_server, auth, make_request):
    prompts = [
        "Raise an exception if",
        "The default value is",
        "Return a list of",
        "This module provides",
    ]
    continuations = {
        shared_server.stub().Generate(make_request(prompt=prompt, temperature=0, max_tokens=3), metadata=auth).text
        for prompt in prompts
    }

    assert len(continuations) == len(prompts)


def test_a_prompt_of_unseen_words_still_generates_by_backing_off(shared_server, auth, make_request):
    response = shared_server.stub().Generate(
        make_request(prompt="Zxqv blorptang quuxification", max_tokens=10),
        metadata=auth,
        timeout=10,
    )

    assert response.usage.completion_tokens == 10
    assert response.text.strip()


def test_an_unset_seed_is_derived_from_request_id_so_retries_repeat_the_text(shared_server, auth, make_request):
    stub = shared_server.stub()
    first = stub.Generate(make_request(request_id="job-77", max_tokens=30), metadata=auth).text
    retry = stub.Generate(make_request(request_id="job-77", max_tokens=30), metadata=auth).text
    other = stub.Generate(make_request(request_id="job-78", max_tokens=30), metadata=auth).text

    assert first == retry
    assert other != first


def test_generation_ends_before_a_stop_sequence_and_leaves_it_out(shared_server, auth, make_request):
    stub = shared_server.stub()
    unstopped = stub.Generate(make_request(max_tokens=80, seed=5), metadata=auth).text
    assert "." in unstopped, "the unstopped text should contain a period for this test to mean something"

    stopped = stub.Generate(make_request(max_tokens=80, seed=5, stop=["."]), metadata=auth)

    assert stopped.finish_reason == pb.FINISH_REASON_STOP
    assert stopped.text == unstopped[: unstopped.index(".")]
    assert stopped.usage.completion_tokens < 80


def test_a_streamed_stop_sequence_is_never_sent_even_in_part(shared_server, auth, make_request):
    stub = shared_server.stub()
    unstopped = stub.Generate(make_request(max_tokens=60, seed=9), metadata=auth).text
    words = unstopped.split()
    stop = f"{words[3]} {words[4]}"  # spans two tokens: the first must be held back

    messages = list(stub.GenerateStream(make_request(max_tokens=60, seed=9, stop=[stop]), metadata=auth))

    text = "".join(message.chunk.text for message in messages if message.HasField("chunk"))
    assert text == unstopped[: unstopped.index(stop)]
    assert messages[-1].summary.finish_reason == pb.FINISH_REASON_STOP


def test_temperature_zero_is_greedy_and_ignores_the_seed(shared_server, auth, make_request):
    stub = shared_server.stub()
    texts = {stub.Generate(make_request(seed=seed, temperature=0), metadata=auth).text for seed in (1, 2, 3)}

    assert len(texts) == 1


@pytest.mark.parametrize("method", ["Generate", "GenerateStream"])
def test_calls_are_logged_as_one_json_line_each(shared_server, auth, make_request, method, wait_until):
    import json

    request = make_request(request_id=f"log-{method}", user_id=9001, max_tokens=5)
    call = getattr(shared_server.stub(), method)(request, metadata=auth, timeout=10)
    if method == "GenerateStream":
        list(call)

    def logged() -> dict | None:
        for line in shared_server.log().splitlines():
            if f'"request_id": "log-{method}"' in line:
                return json.loads(line)
        return None

    entry = wait_until(logged, what="the access log line")
    assert entry["method"] == method
    assert entry["user_id"] == 9001
    assert entry["status"] == "OK"
    assert entry["tokens"] == 5
    assert entry["duration_ms"] >= 0


def test_the_metrics_endpoint_counts_requests_and_tokens(shared_server, auth, make_request):
    before = shared_server.metrics()
    shared_server.stub().Generate(make_request(max_tokens=7), metadata=auth, timeout=10)
    after = shared_server.metrics()

    assert (
        after['contentgen_requests_total{method="Generate"}']
        == before['contentgen_requests_total{method="Generate"}'] + 1
    )
    assert after["contentgen_tokens_generated_total"] == before["contentgen_tokens_generated_total"] + 7
    assert (
        after["contentgen_time_to_first_token_seconds_count"] > before["contentgen_time_to_first_token_seconds_count"]
    )
    assert after['contentgen_request_duration_seconds_count{method="Generate"}'] > 0
    assert "contentgen_generations_in_flight" in after


def test_an_unknown_method_is_unimplemented(shared_server, auth):
    call = shared_server.channel().unary_unary("/contentgen.v1.ContentGeneration/Nope")
    with pytest.raises(grpc.RpcError) as error:
        call(b"", metadata=auth, timeout=5)

    assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
