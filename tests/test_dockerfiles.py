"""What the images run works: each Dockerfile's command, with its environment, serves.

No Docker engine runs here, so the images themselves are not built; the tests run
the same command with the same environment, and the generation service from a
folder holding nothing but what its image copies.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from quantumquill.devstack.stack import free_port
from tests.conftest import child_env

REPO = Path(__file__).resolve().parent.parent


def dockerfile(path: Path) -> tuple[dict[str, str], list[str], list[str]]:
    """The ENV settings, the CMD and the COPY sources of a Dockerfile."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    env: dict[str, str] = {}
    command: list[str] = []
    copies: list[str] = []
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
        elif line.startswith("CMD "):
            command = json.loads(line[4:])
        elif line.startswith("COPY "):
            copies.append(line.split()[1])
    return env, command, copies


def wait_for(check, what: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:
            pass
        assert process.poll() is None, f"{what} exited with {process.returncode}"
        assert time.monotonic() < deadline, f"{what} did not come up"
        time.sleep(0.2)


def test_the_web_image_command_serves_with_the_images_environment() -> None:
    env, command, _ = dockerfile(REPO / "Dockerfile")
    assert command[0] == "gunicorn" and "deploy/gunicorn.conf.py" in command
    port = free_port()
    run_env = child_env(**{**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1"})
    process = subprocess.Popen(
        [sys.executable, "-m", *command], cwd=REPO, env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:

        def healthy() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return response.status == 200

        wait_for(healthy, "gunicorn", process)
    finally:
        process.terminate()
        process.wait(30)


def test_the_generation_service_runs_from_nothing_but_what_its_image_copies(tmp_path: Path) -> None:
    env, command, copies = dockerfile(REPO / "contentgen_service" / "Dockerfile")
    assert copies == ["contentgen_service/requirements.txt", "contentgen_service"]
    app = tmp_path / "app"
    shutil.copytree(
        REPO / "contentgen_service", app / "contentgen_service", ignore=shutil.ignore_patterns("__pycache__")
    )
    port = free_port()
    run_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        **env,
        "CONTENTGEN_BIND": f"127.0.0.1:{port}",
        "CONTENTGEN_CACHE_DIR": str(tmp_path / "cache"),
        "CONTENTGEN_TOKEN": "image-test-token",
    }
    assert command[:2] == ["python", "-m"]
    process = subprocess.Popen(
        [sys.executable, *command[1:]], cwd=app, env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:

        def serving() -> bool:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
                return reply.status == health_pb2.HealthCheckResponse.SERVING

        wait_for(serving, "the generation service", process, timeout=120)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert b"Traceback" not in stderr


def test_the_generation_services_pins_match_the_repositorys() -> None:
    def pins(file: Path) -> dict[str, str]:
        found = re.findall(r"^([A-Za-z0-9_.\[\]-]+)==(\S+)", file.read_text(), re.M)
        return {name.lower().split("[")[0]: version for name, version in found}

    repository = pins(REPO / "requirements.txt")
    service = pins(REPO / "contentgen_service" / "requirements.txt")
    assert service, "the service's requirements pin nothing"
    for name, version in service.items():
        assert repository[name] == version, name
