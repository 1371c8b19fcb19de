"""The shared-secret check, and the probes that stay open without it."""

from __future__ import annotations

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from contentgen_service.gen.contentgen.v1 import contentgen_pb2 as pb

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    "metadata, message",
    [
        ((), "missing 'authorization: Bearer <token>' call metadata"),
        ((("authorization", "Bearer not-the-right-token-at-all"),), "invalid token"),
        (
            (("authorization", "Basic dXNlcjpwYXNz"),),
            "must have the form 'Bearer <token>'",
        ),
    ],
    ids=["missing", "wrong", "wrong scheme"],
)
@pytest.mark.parametrize("method", ["Generate", "GenerateStream"])
def test_calls_without_the_right_token_are_unauthenticated(shared_server, make_request, method, metadata, message):
    call = getattr(shared_server.stub(), method)
    with pytest.raises(grpc.RpcError) as error:
        response = call(make_request(), metadata=metadata, timeout=10)
        if method == "GenerateStream":
            list(response)

    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert message in error.value.details()


def test_unauthenticated_calls_generate_nothing_and_are_counted(shared_server, make_request):
    before = shared_server.metric("contentgen_tokens_generated_total")
    with pytest.raises(grpc.RpcError):
        shared_server.stub().Generate(make_request(), timeout=10)

    assert shared_server.metric("contentgen_tokens_generated_total") == before
    assert shared_server.metric("contentgen_errors_total", method="Generate", code="UNAUTHENTICATED") >= 1


def test_health_reports_serving_for_the_server_and_the_service_without_a_token(
    shared_server,
):
    assert shared_server.health_status("") == "SERVING"
    assert shared_server.health_status("contentgen.v1.ContentGeneration") == "SERVING"
    assert shared_server.health_status("no.such.Service") == "NOT_FOUND"


def test_reflection_lists_the_services_and_describes_the_api_without_a_token(
    shared_server,
):
    stub = reflection_pb2_grpc.ServerReflectionStub(shared_server.channel())
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="contentgen.v1.ContentGeneration"),
    ]
    listed, described = list(stub.ServerReflectionInfo(iter(requests), timeout=10))

    names = {service.name for service in listed.list_services_response.service}
    assert {"contentgen.v1.ContentGeneration", "grpc.health.v1.Health"} <= names
    assert pb.DESCRIPTOR.serialized_pb in described.file_descriptor_response.file_descriptor_proto


def test_a_server_started_without_auth_accepts_calls_without_a_token(start_server, make_request):
    server = start_server(token=None)

    response = server.stub().Generate(make_request(max_tokens=3), timeout=10)

    assert response.usage.completion_tokens == 3
    assert "auth DISABLED" in server.log()
