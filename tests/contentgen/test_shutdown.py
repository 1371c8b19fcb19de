"""SIGTERM drains the server: health first, then running calls, then exit 0."""

from __future__ import annotations

import signal

import grpc
import pytest

from contentgen_service.gen.contentgen.v1 import contentgen_pb2 as pb

pytestmark = pytest.mark.slow


def test_sigterm_lets_a_running_stream_finish_while_health_reports_not_serving(
    start_server, auth, make_request, wait_until
):
    server = start_server(token_interval_ms=40, grace_seconds=20)
    stream = server.stub().GenerateStream(make_request(max_tokens=100), metadata=auth, timeout=60)
    first = next(stream)

    server.send_signal(signal.SIGTERM)

    wait_until(
        lambda: server.health_status() == "NOT_SERVING",
        what="health to turn NOT_SERVING",
    )
    with pytest.raises(grpc.RpcError) as refused:
        server.stub().Generate(make_request(request_id="late", max_tokens=3), metadata=auth, timeout=10)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in refused.value.details()

    rest = list(stream)
    summary = rest[-1].summary
    assert summary.finish_reason == pb.FINISH_REASON_LENGTH
    assert summary.usage.completion_tokens == 100
    assert first.chunk.completion_tokens + sum(message.chunk.tokens for message in rest[:-1]) == 100
    assert server.wait(timeout=30) == 0


@pytest.mark.slow
def test_a_stream_still_running_when_the_grace_period_ends_is_reported_as_drained_never_as_a_result(
    start_server, auth, make_request
):
    server = start_server(token_interval_ms=40, grace_seconds=1.5)
    stream = server.stub().GenerateStream(make_request(max_tokens=1000), metadata=auth, timeout=60)
    received = [next(stream)]

    server.send_signal(signal.SIGTERM)

    with pytest.raises(grpc.RpcError) as drained:
        for message in stream:
            received.append(message)
    assert drained.value.code() == grpc.StatusCode.UNAVAILABLE  # what clients retry
    assert "drained" in drained.value.details()
    assert not any(message.HasField("summary") for message in received)  # a cut-short text has no summary
    assert server.wait(timeout=30) == 0


@pytest.mark.slow
def test_a_unary_call_cut_short_by_the_drain_fails_unavailable_instead_of_returning_partial_text(
    start_server, auth, make_request, wait_until
):
    server = start_server(token_interval_ms=40, grace_seconds=1.5)
    call = server.stub().Generate.future(make_request(max_tokens=1000), metadata=auth, timeout=60)
    wait_until(lambda: server.metric("contentgen_tokens_generated_total") > 0, what="the call to be generating")

    server.send_signal(signal.SIGTERM)

    with pytest.raises(grpc.RpcError) as drained:
        call.result(timeout=30)
    assert drained.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "drained" in drained.value.details()
    assert server.wait(timeout=30) == 0
    assert '"status": "UNAVAILABLE"' in server.log()


def test_an_idle_server_exits_zero_on_sigterm(start_server):
    server = start_server()

    server.send_signal(signal.SIGTERM)

    assert server.wait(timeout=30) == 0
    assert '"message": "stopped"' in server.log()
