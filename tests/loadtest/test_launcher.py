"""Bad input to ``python -m locustfiles.run`` gets a clear message and a non-zero exit, never a traceback."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from quantumquill.devstack.stack import free_port
from tests.loadtest.conftest import launch

pytestmark = pytest.mark.slow


def assert_clean_failure(run_code: int, output: str, code: int, message: str) -> None:
    assert run_code == code, output
    assert message in output
    assert "Traceback" not in output


def test_an_unknown_shape_is_refused_with_the_choices() -> None:
    run = launch("--headless", "--shape", "tsunami")
    assert_clean_failure(run.code, run.output, 2, "argument --shape: invalid choice: 'tsunami' (choose from")


def test_a_host_that_is_not_a_url_is_refused() -> None:
    run = launch("--headless", "--host", "localhost:8000")
    assert_clean_failure(run.code, run.output, 1, "--host 'localhost:8000' is not a URL; expected something like")


def test_a_host_where_nothing_answers_is_refused() -> None:
    port = free_port()
    run = launch("--headless", "--host", f"http://127.0.0.1:{port}")
    assert_clean_failure(
        run.code, run.output, 1, f"nothing answers at http://127.0.0.1:{port} ([Errno 111] Connection refused)."
    )
    assert "Check --host, or leave it out to start the platform on this machine." in run.output


def test_a_platform_that_is_not_up_is_refused_when_starting_one_is_not_allowed() -> None:
    port = free_port()
    run = launch("--headless", "--no-start", env={"QQ_LOADTEST_HOST": f"http://127.0.0.1:{port}"})
    assert_clean_failure(run.code, run.output, 1, "the platform is not up: nothing answers at")
    assert "Start it with `make run`, or drop --no-start." in run.output


class _NotQuantumQuill(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(404)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def other_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotQuantumQuill)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_host_that_is_not_quantumquill_is_refused(other_server: str) -> None:
    run = launch("--headless", "--host", other_server)
    assert_clean_failure(run.code, run.output, 1, "answered GET /accounts/login/ with HTTP 404: is this QuantumQuill?")


def test_a_malformed_thresholds_file_is_refused_before_anything_starts(tmp_path: Path) -> None:
    bad = tmp_path / "thresholds.toml"
    bad.write_text("[gate]\nmax_failure_ratio = 'low'\n")
    run = launch("--headless", "--thresholds", str(bad))
    assert_clean_failure(run.code, run.output, 2, "max_failure_ratio must be a non-negative number, got 'low'")


def test_a_busy_web_ui_port_is_refused_with_the_fix() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = launch("--web-port", str(port))
    assert_clean_failure(run.code, run.output, 1, f"port {port} is in use (another Locust web UI?); pass --web-port N")


def test_an_unknown_user_class_is_refused_with_the_choices() -> None:
    run = launch("--headless", "--user-classes", "WebUser,Robot")
    assert_clean_failure(
        run.code, run.output, 1, "unknown user class(es) Robot; choose from WebUser, NewVisitor, ApiUser, GrpcUser"
    )
