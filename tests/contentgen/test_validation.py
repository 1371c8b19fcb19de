"""Bad input is refused with INVALID_ARGUMENT and a message that says how to fix it."""

from __future__ import annotations

import grpc
import pytest

pytestmark = pytest.mark.slow

BAD_FIELDS = {
    "missing request_id": ({"request_id": ""}, "request_id is required"),
    "overlong request_id": (
        {"request_id": "x" * 129},
        "request_id must be 1-128 printable ASCII characters",
    ),
    "non-positive user_id": ({"user_id": 0}, "user_id must be a positive integer"),
    "empty prompt": ({"prompt": ""}, "prompt must not be empty"),
    "blank prompt": ({"prompt": "   \n"}, "prompt must not be empty"),
    "oversized prompt": (
        {"prompt": "word " * 2000},
        "prompt is 10000 characters; the limit is 8000",
    ),
    "zero max_tokens": (
        {"max_tokens": 0},
        "max_tokens must be between 1 and 1024, got 0",
    ),
    "too many max_tokens": (
        {"max_tokens": 5000},
        "max_tokens must be between 1 and 1024, got 5000",
    ),
    "negative temperature": (
        {"temperature": -0.1},
        "temperature must be between 0 and 2",
    ),
    "hot temperature": ({"temperature": 2.5}, "temperature must be between 0 and 2"),
    "NaN temperature": (
        {"temperature": float("nan")},
        "temperature must be between 0 and 2",
    ),
    "zero top_p": ({"top_p": 0.0}, "top_p must be greater than 0 and at most 1, got 0"),
    "top_p above one": (
        {"top_p": 1.5},
        "top_p must be greater than 0 and at most 1, got 1.5",
    ),
    "too many stop sequences": (
        {"stop": ["a", "b", "c", "d", "e"]},
        "at most 4 stop sequences are allowed, got 5",
    ),
    "overlong stop sequence": (
        {"stop": ["ok", "y" * 65]},
        "stop sequence 2 is 65 characters; each must be 1-64",
    ),
    "empty stop sequence": (
        {"stop": [""]},
        "stop sequence 1 is 0 characters; each must be 1-64",
    ),
}


@pytest.mark.parametrize("method", ["Generate", "GenerateStream"])
@pytest.mark.parametrize("fields, message", BAD_FIELDS.values(), ids=BAD_FIELDS.keys())
def test_each_bad_field_is_refused_with_invalid_argument_naming_the_allowed_range(
    shared_server, auth, make_request, method, fields, message
):
    call = getattr(shared_server.stub(), method)
    with pytest.raises(grpc.RpcError) as error:
        response = call(make_request(**fields), metadata=auth, timeout=10)
        if method == "GenerateStream":
            list(response)

    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details()


def test_every_problem_of_a_request_is_reported_at_once(shared_server, auth, make_request):
    with pytest.raises(grpc.RpcError) as error:
        shared_server.stub().Generate(make_request(request_id="", prompt="", max_tokens=0), metadata=auth)

    details = error.value.details()
    assert "request_id is required" in details
    assert "prompt must not be empty" in details
    assert "max_tokens must be between 1 and 1024" in details


def test_refused_requests_generate_nothing(shared_server, auth, make_request):
    before = shared_server.metric("contentgen_tokens_generated_total")
    with pytest.raises(grpc.RpcError):
        shared_server.stub().Generate(make_request(max_tokens=0), metadata=auth)

    assert shared_server.metric("contentgen_tokens_generated_total") == before
    assert shared_server.metric("contentgen_errors_total", method="Generate", code="INVALID_ARGUMENT") >= 1


def test_the_prompt_limit_is_a_server_setting(start_server, auth, make_request):
    server = start_server(max_prompt_chars=10, max_tokens_limit=5)

    with pytest.raises(grpc.RpcError) as error:
        server.stub().Generate(make_request(prompt="a longer prompt", max_tokens=6), metadata=auth)

    assert "prompt is 15 characters; the limit is 10" in error.value.details()
    assert "max_tokens must be between 1 and 5, got 6" in error.value.details()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["Generate", "GenerateStream"])
def test_undecodable_request_bytes_are_refused_with_invalid_argument_on_both_methods(start_server, auth, method):
    server = start_server()
    raw = server.channel().unary_unary if method == "Generate" else server.channel().unary_stream
    call = raw(f"/contentgen.v1.ContentGeneration/{method}", request_serializer=None, response_deserializer=None)

    with pytest.raises(grpc.RpcError) as refused:
        result = call(b"\xff\xff\xff\xff not a protobuf", metadata=auth, timeout=10)
        if method == "GenerateStream":
            list(result)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid contentgen.v1.GenerateRequest" in refused.value.details()
