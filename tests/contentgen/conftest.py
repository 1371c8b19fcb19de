"""Fixtures for the content-generation service tests.

The servers under test are real processes started with
``python -m contentgen_service serve`` on free loopback ports. The n-gram
model is trained once per test session into a shared cache directory
(``model_cache_dir``, from tests/support/model.py), so each server start only loads it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from contentgen_service.gen.contentgen.v1 import contentgen_pb2 as pb
from contentgen_service.gen.contentgen.v1 import contentgen_pb2_grpc as pb_grpc
from quantumquill.devstack.stack import free_port
from tests.support import wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789abcdef"
STARTUP_TIMEOUT = 30.0


class ServerProcess:
    """A contentgen server running as a child process."""

    def __init__(
        self,
        *,
        flags: list[str],
        env: dict[str, str],
        log_path: Path,
        port: int,
        metrics_port: int,
    ):
        self.flags = flags
        self.env = env
        self.log_path = log_path
        self.port = port
        self.metrics_port = metrics_port
        self.target = f"127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._channel: grpc.Channel | None = None

    def start(self) -> ServerProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "contentgen_service", "serve", *self.flags],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = grpc.insecure_channel(self.target)
        return self._channel

    def stub(self) -> pb_grpc.ContentGenerationStub:
        return pb_grpc.ContentGenerationStub(self.channel())

    def health_status(self, service: str = "") -> str:
        """Return the health status name, or the gRPC error code name when the check fails."""
        with grpc.insecure_channel(self.target) as channel:
            try:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=2.0
                )
            except grpc.RpcError as error:
                return error.code().name
        return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)

    def wait_until_serving(self) -> ServerProcess:
        assert self.process is not None

        def serving() -> bool:
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode} during startup:\n{self.log()}")
            return self.health_status() == "SERVING"

        wait_until(
            serving,
            timeout=STARTUP_TIMEOUT,
            what=f"server on {self.target} to report SERVING",
        )
        return self

    def metrics(self) -> dict[str, float]:
        """Scrape /metrics; keys look like ``name{label="value"}`` (labels sorted)."""
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples

    def metric(self, name: str, **labels: str) -> float:
        key = name
        if labels:
            key += "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        return self.metrics().get(key, 0.0)

    def send_signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _server_env(model_cache_dir: Path, token: str | None, extra: dict[str, str] | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CONTENTGEN_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env["CONTENTGEN_CACHE_DIR"] = str(model_cache_dir)
    env["CONTENTGEN_LOG_LEVEL"] = "INFO"
    if token is not None:
        env["CONTENTGEN_TOKEN"] = token
    env.update(extra or {})
    return env


ServerFactory = Callable[..., ServerProcess]


def _factory(model_cache_dir: Path, log_dir: Path, servers: list[ServerProcess]) -> ServerFactory:
    def start(
        *,
        token: str | None = TOKEN,
        port: int | None = None,
        env: dict[str, str] | None = None,
        wait: bool = True,
        **options: object,
    ) -> ServerProcess:
        """Start a server; keyword options become flags (``grace_seconds=2`` -> ``--grace-seconds 2``)."""
        port = port or free_port()
        metrics_port = free_port()
        flags = ["--bind", f"127.0.0.1:{port}", "--metrics-port", str(metrics_port)]
        if token is None:
            flags.append("--insecure-no-auth")
        for name, value in options.items():
            flags += [f"--{name.replace('_', '-')}", str(value)]
        server = ServerProcess(
            flags=flags,
            env=_server_env(model_cache_dir, token, env),
            log_path=log_dir / f"server-{port}.log",
            port=port,
            metrics_port=metrics_port,
        )
        servers.append(server)
        server.start()
        return server.wait_until_serving() if wait else server

    return start


@pytest.fixture
def start_server(model_cache_dir: Path, tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers for one test; they are stopped when it ends."""
    servers: list[ServerProcess] = []
    yield _factory(model_cache_dir, tmp_path, servers)
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def shared_server(model_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One unpaced server shared by the tests of a module that only read from it."""
    servers: list[ServerProcess] = []
    yield _factory(model_cache_dir, tmp_path_factory.mktemp("shared-server"), servers)()
    for server in servers:
        server.stop()


@pytest.fixture
def auth() -> tuple[tuple[str, str], ...]:
    """Call metadata carrying the test token."""
    return (("authorization", f"Bearer {TOKEN}"),)


@pytest.fixture
def token() -> str:
    return TOKEN


@pytest.fixture
def make_request() -> Callable[..., pb.GenerateRequest]:
    """Build a valid GenerateRequest; keyword arguments override fields."""

    def build(**fields: Any) -> pb.GenerateRequest:
        values: dict[str, Any] = {
            "request_id": "req-1",
            "user_id": 42,
            "prompt": "The socket module",
            "max_tokens": 24,
        }
        values.update(fields)
        return pb.GenerateRequest(**values)

    return build


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., Any]:
    """``wait_until(condition, timeout=..., what=...)``: poll until truthy or fail."""
    return wait_until


@pytest.fixture(name="free_port")
def free_port_fixture() -> Callable[[], int]:
    """``free_port()``: a loopback port that was free a moment ago."""
    return free_port


# A stand-in for an OpenAI-compatible server (vLLM, Ollama) speaking the
# streaming protocol: POST /v1/chat/completions or /v1/completions with
# "stream": true, answered with server-sent events ending in "data: [DONE]".
# What it does is chosen by the prompt:
#   "status 503"        -> HTTP 503 with an OpenAI-style error body
#   "slow ..."          -> one token every 50 ms (to observe cancellation)
#   "midstream-error"   -> two tokens, then an error event
#   "truncate"          -> two tokens, then the connection closes without [DONE]
#   anything else       -> max_tokens tokens "w0 w1 w2 ...", then [DONE]


class FakeOpenAIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FakeOpenAIHandler)
        self.requests: list[dict[str, Any]] = []
        self.disconnects = 0
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _FakeOpenAIHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeOpenAIServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        chat = self.path.endswith("/chat/completions")
        with self.server.lock:
            self.server.requests.append(
                {
                    "path": self.path,
                    "body": body,
                    "authorization": self.headers.get("Authorization"),
                }
            )
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        if prompt.startswith("status "):
            status = int(prompt.split()[1])
            payload = json.dumps(
                {
                    "error": {
                        "message": f"fake upstream refused with {status}",
                        "type": "test",
                    }
                }
            )
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload.encode())
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._stream(prompt, body, chat)
        except (BrokenPipeError, ConnectionResetError):
            with self.server.lock:
                self.server.disconnects += 1

    def _event(self, data: str) -> None:
        payload = f"data: {data}\n\n".encode()
        self.wfile.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        self.wfile.flush()

    def _delta(self, text: str, chat: bool, finish: str | None = None) -> None:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            choice["delta"] = {"content": text} if text else {}
        else:
            choice["text"] = text
        self._event(json.dumps({"id": "cmpl-test", "object": "chunk", "choices": [choice]}))

    def _stream(self, prompt: str, body: dict[str, Any], chat: bool) -> None:
        count = int(body.get("max_tokens", 16))
        if prompt in ("midstream-error", "truncate"):
            count = 2
        for i in range(count):
            if prompt.startswith("slow"):
                time.sleep(0.05)
            self._delta(f" w{i}" if i else f"w{i}", chat)
        if prompt == "midstream-error":
            self._event(json.dumps({"error": {"message": "engine crashed", "code": 500}}))
        if prompt == "truncate":
            self.wfile.write(b"0\r\n\r\n")
            self.close_connection = True
            return
        self._delta("", chat, finish="length")
        self._event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAIServer]:
    """A fake OpenAI-compatible streaming server on a loopback port."""
    server = FakeOpenAIServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-openai", daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
