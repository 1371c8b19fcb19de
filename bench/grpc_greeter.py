"""gRPC's hello-world Greeter, as a baseline server for bench_grpc.py.

The messages and service of grpc's examples/protos/helloworld.proto are built
with the protobuf runtime (no generated code, no grpc examples needed); the
server is the one from examples/python/helloworld (a thread pool of 10).

Run: python bench/grpc_greeter.py --port 50070
"""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE = "helloworld.Greeter"
STREAM_REPLIES = 3


def _build_messages() -> tuple[Any, Any]:
    string = descriptor_pb2.FieldDescriptorProto.TYPE_STRING
    optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    file = descriptor_pb2.FileDescriptorProto(name="helloworld.proto", package="helloworld", syntax="proto3")
    file.message_type.add(name="HelloRequest").field.add(name="name", number=1, type=string, label=optional)
    file.message_type.add(name="HelloReply").field.add(name="message", number=1, type=string, label=optional)
    greeter = file.service.add(name="Greeter")
    greeter.method.add(name="SayHello", input_type=".helloworld.HelloRequest", output_type=".helloworld.HelloReply")
    greeter.method.add(
        name="SayHelloStreamReply",
        input_type=".helloworld.HelloRequest",
        output_type=".helloworld.HelloReply",
        server_streaming=True,
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("helloworld.HelloRequest")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("helloworld.HelloReply")),
    )


HelloRequest, HelloReply = _build_messages()


def say_hello(request: Any, context: grpc.ServicerContext) -> Any:
    """The example's unary greeting."""
    return HelloReply(message=f"Hello, {request.name}!")


def say_hello_stream_reply(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
    """The example's streaming greeting: a few replies for one request."""
    for number in range(STREAM_REPLIES):
        yield HelloReply(message=f"Hello number {number}, {request.name}!")


def greeter_stub(channel: grpc.Channel) -> tuple[Any, Any]:
    """Return callables for SayHello and SayHelloStreamReply on ``channel``."""
    unary = channel.unary_unary(
        f"/{SERVICE}/SayHello",
        request_serializer=HelloRequest.SerializeToString,
        response_deserializer=HelloReply.FromString,
    )
    stream = channel.unary_stream(
        f"/{SERVICE}/SayHelloStreamReply",
        request_serializer=HelloRequest.SerializeToString,
        response_deserializer=HelloReply.FromString,
    )
    return unary, stream


def serve(port: int) -> None:
    """Serve the Greeter on 127.0.0.1:``port`` until SIGTERM or SIGINT."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=10))
    handlers = {
        "SayHello": grpc.unary_unary_rpc_method_handler(
            say_hello, request_deserializer=HelloRequest.FromString, response_serializer=HelloReply.SerializeToString
        ),
        "SayHelloStreamReply": grpc.unary_stream_rpc_method_handler(
            say_hello_stream_reply,
            request_deserializer=HelloRequest.FromString,
            response_serializer=HelloReply.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    server.stop(grace=1).wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="gRPC hello-world Greeter server (benchmark baseline)")
    parser.add_argument("--port", type=int, required=True, help="loopback port to listen on")
    serve(parser.parse_args().port)
