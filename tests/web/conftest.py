"""A real app server (gunicorn) on a loopback port, using the test databases."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from quantumquill.devstack.stack import free_port
from tests.conftest import child_env


@dataclass
class AppServer:
    url: str
    process: subprocess.Popen[bytes]

    def get(self, path: str, *, session: str | None = None, timeout: float = 10) -> tuple[int, dict[str, str], str]:
        request = urllib.request.Request(self.url + path)
        if session:
            request.add_header("Cookie", f"sessionid={session}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read().decode()


def start_app_server(**env: str) -> AppServer:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "quantumquill.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            "1",
            "--threads",
            "4",
            "--timeout",
            "60",
        ],
        env=child_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    server = AppServer(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 30
    while True:
        try:
            status, _, _ = server.get("/", timeout=2)
            if status == 200:
                return server
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"gunicorn did not start: {process.stderr.read().decode() if process.stderr else ''}")
        time.sleep(0.1)


@pytest.fixture
def app_server() -> Iterator[AppServer]:
    server = start_app_server()
    yield server
    server.process.terminate()
    server.process.wait(15)
