"""A real app server (gunicorn) on a loopback port, using the test databases."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


def start_app_server(*, log_path: Path | None = None, **env: str) -> AppServer:
    """Start gunicorn (gthread worker: streaming responses hold a thread, not the process).

    With ``log_path`` its log goes to that file, which a long test can read without the pipe filling up.
    """
    port = free_port()
    log = open(log_path, "ab") if log_path is not None else None
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "quantumquill.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-k",
            "gthread",
            "-w",
            "1",
            "--threads",
            "4",
            "--timeout",
            "60",
        ],
        env=child_env(**env),
        stdout=subprocess.DEVNULL,
        stderr=log if log is not None else subprocess.PIPE,
    )
    if log is not None:
        log.close()
    server = AppServer(f"http://127.0.0.1:{port}", process)
    deadline = time.monotonic() + 60  # a loaded machine (parallel test workers) boots Django slowly
    while True:
        try:
            status, _, _ = server.get("/", timeout=2)
            if status == 200:
                return server
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = process.stderr.read().decode() if process.stderr else log_path.read_text() if log_path else ""
            raise RuntimeError(f"gunicorn did not start: {output}")
        time.sleep(0.1)


@pytest.fixture
def app_server() -> Iterator[AppServer]:
    server = start_app_server()
    yield server
    server.process.terminate()
    server.process.wait(15)
