"""The client module: results, errors, round_robin, retries, circuit breaker, fork."""

from __future__ import annotations

import os
import signal

import pytest

from contentgen_service.breaker import BreakerState
from contentgen_service.client import ClientConfig, ContentGenClient, GenerateResult, GenerationParams
from contentgen_service.client_errors import (
    ContentGenCircuitOpen,
    ContentGenDeadlineExceeded,
    ContentGenInvalidArgument,
    ContentGenOverloaded,
    ContentGenUnauthenticated,
    ContentGenUnavailable,
)
from contentgen_service.envparse import ConfigError
from contentgen_service.results import FinishReason


@pytest.fixture
def client_for(token):
    clients = []

    def make(target: str, **settings) -> ContentGenClient:
        client = ContentGenClient(ClientConfig(target=target, token=settings.pop("token", token), **settings))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.mark.slow
def test_generate_returns_a_typed_result(shared_server, client_for):
    result = client_for(shared_server.target).generate(
        GenerationParams(request_id="c-1", user_id=5, prompt="Return the", max_tokens=9)
    )

    assert isinstance(result, GenerateResult)
    assert result.request_id == "c-1"
    assert result.finish_reason is FinishReason.LENGTH
    assert result.usage.completion_tokens == 9
    assert result.text.strip()


@pytest.mark.slow
def test_a_stream_yields_chunks_then_exposes_the_summary_and_matches_the_unary_text(shared_server, client_for):
    client = client_for(shared_server.target)
    params = GenerationParams(request_id="c-2", user_id=5, prompt="The file", max_tokens=15, seed=4)

    with client.generate_stream(params) as stream:
        chunks = list(stream)

    assert len(chunks) > 1
    assert stream.summary is not None and stream.summary.usage.completion_tokens == 15
    assert "".join(chunk.text for chunk in chunks) == client.generate(params).text


@pytest.mark.slow
def test_closing_a_stream_cancels_the_generation_on_the_server(start_server, client_for, wait_until):
    server = start_server(token_interval_ms=20)
    stream = client_for(server.target).generate_stream(
        GenerationParams(request_id="c-3", user_id=5, prompt="The", max_tokens=1000)
    )
    next(stream)

    stream.close()

    wait_until(
        lambda: server.metric("contentgen_generations_interrupted_total", reason="cancelled") == 1,
        what="the server to record the cancellation",
    )
    assert list(stream) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings, error_type, retryable",
    [
        ({"prompt": ""}, ContentGenInvalidArgument, False),
        ({"max_tokens": 5000}, ContentGenInvalidArgument, False),
        ({"token": "wrong-token-but-long-enough"}, ContentGenUnauthenticated, False),
    ],
    ids=["empty prompt", "too many tokens", "wrong token"],
)
def test_failures_raise_typed_errors_that_say_whether_to_retry(
    shared_server, client_for, settings, error_type, retryable
):
    client = client_for(
        shared_server.target,
        token=settings.pop("token", None) or "test-token-0123456789abcdef",
    )
    params = GenerationParams(**{"request_id": "c-4", "user_id": 5, "prompt": "The", "max_tokens": 5, **settings})

    with pytest.raises(error_type) as error:
        client.generate(params)

    assert error.value.retryable is retryable


@pytest.mark.slow
def test_a_short_deadline_raises_deadline_exceeded(start_server, client_for):
    server = start_server(token_interval_ms=20)

    with pytest.raises(ContentGenDeadlineExceeded) as error:
        client_for(server.target).generate(
            GenerationParams(request_id="c-5", user_id=5, prompt="The", max_tokens=1000), timeout=0.3
        )

    assert error.value.retryable


@pytest.mark.slow
def test_overload_raises_a_retryable_overloaded_error(start_server, client_for):
    server = start_server(token_interval_ms=20, max_concurrency=1)
    client = client_for(server.target)
    with client.generate_stream(GenerationParams(request_id="busy", user_id=5, prompt="The", max_tokens=1000)) as busy:
        next(busy)
        with pytest.raises(ContentGenOverloaded) as error:
            client.generate(GenerationParams(request_id="c-6", user_id=5, prompt="The", max_tokens=5))

    assert error.value.retryable


@pytest.mark.slow
def test_round_robin_spreads_calls_over_every_server_in_the_target(start_server, client_for, wait_until):
    servers = [start_server(), start_server()]
    client = client_for("ipv4:" + ",".join(server.target for server in servers))

    def served() -> list[float]:
        return [server.metric("contentgen_requests_total", method="Generate") for server in servers]

    def both_reached() -> bool:
        # The channel connects to each address in the background; until a
        # connection is ready, round_robin only uses the others.
        client.generate(GenerationParams(request_id="rr-warmup", user_id=5, prompt="The", max_tokens=1))
        return all(count > 0 for count in served())

    wait_until(both_reached, what="calls to reach both servers")
    before = served()
    for i in range(20):
        client.generate(GenerationParams(request_id=f"rr-{i}", user_id=5, prompt="The", max_tokens=3))

    spread = [after - earlier for after, earlier in zip(served(), before, strict=True)]
    assert sum(spread) == 20
    assert all(count >= 5 for count in spread), spread


@pytest.mark.slow
def test_calls_go_to_the_other_server_while_one_is_draining(start_server, client_for, wait_until):
    draining = start_server(token_interval_ms=40, grace_seconds=30)
    healthy = start_server()
    client = client_for(f"ipv4:{draining.target},{healthy.target}")
    # Keep the draining server busy so that it stays up, refusing new calls.
    with client_for(draining.target).generate_stream(
        GenerationParams(request_id="hold", user_id=5, prompt="The", max_tokens=200)
    ) as held:
        next(held)
        draining.send_signal(signal.SIGTERM)
        wait_until(
            lambda: draining.health_status() == "NOT_SERVING",
            what="the first server to drain",
        )

        for i in range(10):
            client.generate(GenerationParams(request_id=f"retry-{i}", user_id=5, prompt="The", max_tokens=3))

    assert healthy.metric("contentgen_requests_total", method="Generate") == 10


@pytest.mark.slow
def test_the_circuit_opens_while_the_service_is_down_and_closes_when_it_returns(
    start_server, client_for, wait_until, free_port
):
    port = free_port()
    client = client_for(
        f"127.0.0.1:{port}",
        breaker_failures=3,
        breaker_reset_seconds=0.5,
        max_attempts=1,
    )
    params = GenerationParams(request_id="cb", user_id=5, prompt="The", max_tokens=3)

    for _ in range(3):
        with pytest.raises(ContentGenUnavailable) as error:
            client.generate(params, timeout=2)
        assert not isinstance(error.value, ContentGenCircuitOpen)
    assert client.breaker_state is BreakerState.OPEN
    with pytest.raises(ContentGenCircuitOpen) as open_error:
        client.generate(params, timeout=2)
    assert open_error.value.retryable
    assert "unreachable" in str(open_error.value)

    start_server(port=port)

    def call_succeeds() -> bool:
        try:
            client.generate(params, timeout=2)
        except ContentGenUnavailable:
            return False
        return True

    wait_until(
        call_succeeds,
        timeout=30,
        what="the circuit to close after the server came back",
    )
    assert client.breaker_state is BreakerState.CLOSED


@pytest.mark.slow
def test_the_client_works_in_a_forked_child_after_use_in_the_parent(shared_server, client_for):
    client = client_for(shared_server.target)
    params = GenerationParams(request_id="fork", user_id=5, prompt="The", max_tokens=8)
    expected = client.generate(params).text

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report through the pipe, never return into pytest
        status = 1
        try:
            os.close(read_end)
            text = client.generate(params).text
            os.write(write_end, text.encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_text = pipe.read().decode()
    _, wait_status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(wait_status) == 0
    assert child_text == expected
    assert client.generate(params).text == expected  # the parent's channel still works


def test_client_settings_come_from_the_environment():
    config = ClientConfig.from_env(
        {
            "CONTENTGEN_TARGET": "dns:///contentgen.internal:50051",
            "CONTENTGEN_TOKEN": "secret-secret-secret",
            "CONTENTGEN_TIMEOUT_SECONDS": "12.5",
            "CONTENTGEN_BREAKER_FAILURES": "7",
        }
    )

    assert config.target == "dns:///contentgen.internal:50051"
    assert config.token == "secret-secret-secret"
    assert config.timeout_seconds == 12.5
    assert config.breaker_failures == 7
    assert config.tls is False


def test_a_malformed_client_variable_is_named_in_the_error():
    with pytest.raises(ConfigError) as error:
        ClientConfig.from_env({"CONTENTGEN_BREAKER_FAILURES": "many"})

    assert "CONTENTGEN_BREAKER_FAILURES='many'" in str(error.value)
    assert "whole number" in str(error.value)
