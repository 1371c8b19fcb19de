"""Generations end to end, with real processes: a contentgen server, a Celery worker, gunicorn.

Every process gets the same short deadlines and backoffs (``TUNING``) so the
failure paths finish in seconds; the in-process Django (the test client) gets
them too, through ``settings.CONTENTGEN``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.conf import settings
from rest_framework.test import APIClient

from quantumquill.devstack.redis import RedisServer
from quantumquill.devstack.stack import REPO_ROOT, stack_from_state
from tests.conftest import child_env, raw_rows
from tests.contentgen.conftest import (
    TOKEN,
    ServerProcess,
    _factory,
    free_port,
)
from tests.support import wait_until

# Deadline 3 s per call (claims expire 13 s after they are taken), retries after 0.5 s, 1 s, 2 s ...
TUNING = {
    "CONTENTGEN_TIMEOUT_SECONDS": "3",
    "CONTENTGEN_RETRY_BACKOFF_SECONDS": "0.5",
    "CONTENTGEN_RETRY_BACKOFF_MAX_SECONDS": "2",
    "CONTENTGEN_BREAKER_RESET_SECONDS": "1",
    "CONTENTGEN_STREAM_POLL_SECONDS": "0.1",
    "CONTENTGEN_JOB_MAX_ATTEMPTS": "10",
    # The sweeper is off unless a test turns it on (it would re-send what a test leaves queued on purpose).
    "CONTENTGEN_SWEEP_INTERVAL_SECONDS": "0",
}
# The sweeper, for the tests that turn it on: every second, jobs overdue by 2 s.
SWEEPER = {"CONTENTGEN_SWEEP_INTERVAL_SECONDS": "1", "CONTENTGEN_SWEEP_OVERDUE_SECONDS": "2"}
# Token pacing that keeps a short generation in flight for a second or two.
PACED_MS = 40


def shard_of(user_id: int) -> str:
    """The standard test map: user IDs under 1000 on shard1, the rest on shard2."""
    return "shard1" if user_id < 1000 else "shard2"


def generation_row(user_id: int, generation_id: int) -> dict[str, Any]:
    """The generation as stored on the owner's shard (read directly, bypassing the router)."""
    columns = ["status", "output", "error", "finish_reason", "attempts", "completion_tokens", "claim_token"]
    rows = raw_rows(
        shard_of(user_id),
        f"SELECT {', '.join(columns)} FROM content_generation WHERE id = %s AND user_id = %s",
        [generation_id, user_id],
    )
    assert rows, f"generation {generation_id} is not on {shard_of(user_id)}"
    return dict(zip(columns, rows[0], strict=True))


def completion_events(user_id: int, generation_id: int) -> int:
    return raw_rows(
        shard_of(user_id),
        "SELECT count(*) FROM content_usageevent WHERE generation_id = %s AND kind = 'generation_completed'",
        [generation_id],
    )[0][0]


def wait_for_row(
    user_id: int, generation_id: int, condition: Callable[[dict[str, Any]], bool], *, timeout: float = 60, what: str
) -> dict[str, Any]:
    return wait_until(
        lambda: (row := generation_row(user_id, generation_id)) and condition(row) and row, timeout=timeout, what=what
    )


def wait_for_status(user_id: int, generation_id: int, *statuses: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for_row(
        user_id,
        generation_id,
        lambda row: row["status"] in statuses,
        timeout=timeout,
        what=f"generation {generation_id} to reach {' or '.join(statuses)}",
    )


@dataclass
class Worker:
    """A Celery worker process (prefork) consuming the default queue."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pool_processes(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children()

    def stop(self) -> None:
        """Warm shutdown (SIGTERM): running jobs finish first, as a deployment stops a worker."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """SIGKILL to the worker and its pool processes, and wait until all are gone: a test's cleanup.

        A warm stop of even an idle prefork worker takes seconds (each pool process sleeps a fixed second
        after it reports its exit); after its test nothing is left to learn from it. A job it had taken stays
        unacknowledged in the broker for the visibility timeout (an hour), longer than any run, and the job
        messages still queued are purged by the next test's ``stack``.
        """
        if self.process.poll() is not None:
            return
        processes = [psutil.Process(self.process.pid), *self.pool_processes()]
        for process in processes:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.wait()
        wait_until(lambda: not any(_alive(process) for process in processes), timeout=20, what="the worker to die")


def _alive(process: psutil.Process) -> bool:
    """Still running: a killed process whose parent has not reaped it yet (a zombie) runs nothing."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_worker(log_path: Path, env: dict[str, str], concurrency: int = 2) -> Worker:
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "quantumquill",
                "worker",
                "--pool=prefork",
                f"--concurrency={concurrency}",
                "--loglevel=INFO",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "-n",
                f"generation-tests-{uuid.uuid4().hex[:8]}@%h",
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    worker = Worker(process, log_path)

    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"the Celery worker exited with {process.returncode}:\n{worker.log()}")
        return " ready." in worker.log()

    wait_until(ready, timeout=60, what="the Celery worker to be ready")
    return worker


@dataclass
class GenerationStack:
    """One test's processes: contentgen servers on one port, Celery workers and app servers pointed at it."""

    tmp_path: Path
    start_server: Callable[..., ServerProcess]
    port: int = field(default_factory=free_port)
    workers: list[Worker] = field(default_factory=list)
    app_servers: list[Any] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        """Environment of a Django process (worker, gunicorn) talking to this stack's service."""
        return child_env(**{"CONTENTGEN_TARGET": self.target, "CONTENTGEN_TOKEN": TOKEN, **TUNING, **extra})

    def server(self, *, wait: bool = True, **options: Any) -> ServerProcess:
        """Start a contentgen server on this stack's port (flags as keywords: ``token_interval_ms=40``)."""
        return self.start_server(port=self.port, wait=wait, **options)

    def worker(self, concurrency: int = 2, **extra: str) -> Worker:
        worker = start_worker(self.tmp_path / f"worker-{len(self.workers)}.log", self.env(**extra), concurrency)
        self.workers.append(worker)
        return worker

    def app_server(self, **extra: str) -> Any:
        from tests.web.conftest import start_app_server

        server = start_app_server(
            log_path=self.tmp_path / f"gunicorn-{len(self.app_servers)}.log",
            **{key: value for key, value in self.env(**extra).items() if key.startswith("CONTENTGEN_")},
        )
        self.app_servers.append(server)
        return server

    def stop(self) -> None:
        """The app servers first (a request they still serve may enqueue a job), then the workers."""
        for server in self.app_servers:
            server.process.terminate()
            server.process.wait(15)
        for worker in self.workers:
            worker.kill()


def contentgen_settings(target: str, token: str = TOKEN, **overrides: Any) -> dict[str, Any]:
    """``settings.CONTENTGEN`` for the test process, tuned like the child processes."""
    timeout = float(TUNING["CONTENTGEN_TIMEOUT_SECONDS"])
    conf = {
        **settings.CONTENTGEN,
        "TARGET": target,
        "TOKEN": token,
        "TIMEOUT_SECONDS": timeout,
        "RETRY_BACKOFF_SECONDS": float(TUNING["CONTENTGEN_RETRY_BACKOFF_SECONDS"]),
        "RETRY_BACKOFF_MAX_SECONDS": float(TUNING["CONTENTGEN_RETRY_BACKOFF_MAX_SECONDS"]),
        "BREAKER_RESET_SECONDS": float(TUNING["CONTENTGEN_BREAKER_RESET_SECONDS"]),
        "STREAM_POLL_SECONDS": float(TUNING["CONTENTGEN_STREAM_POLL_SECONDS"]),
        "JOB_MAX_ATTEMPTS": int(TUNING["CONTENTGEN_JOB_MAX_ATTEMPTS"]),
        "JOB_SOFT_TIME_LIMIT": int(timeout) + 5,
        "JOB_TIME_LIMIT": int(timeout) + 10,
        "CLAIM_LEASE_SECONDS": int(timeout) + 10,
    }
    conf.update(overrides)
    return conf


def purge_broker() -> int:
    """Drop the job messages earlier tests left in the broker's queue; returns how many there were.

    A test whose worker stopped before its jobs ran (an outage, a kill, a crowd of generations) leaves their
    messages queued. The next test's worker would first take every one of them (each finds its generation
    gone), and that test's own job would wait behind thousands of them.
    """
    from quantumquill.celery import app

    return int(app.control.purge() or 0)


@pytest.fixture
def stack(request: pytest.FixtureRequest, tmp_path: Path, settings: Any) -> Iterator[GenerationStack]:
    purge_broker()  # each test's jobs are the only ones in the queue
    servers: list[ServerProcess] = []
    cache_dir = request.getfixturevalue("model_cache_dir")
    generation_stack = GenerationStack(tmp_path, _factory(cache_dir, tmp_path, servers))
    settings.CONTENTGEN = contentgen_settings(generation_stack.target)
    yield generation_stack
    generation_stack.stop()
    for server in servers:
        server.stop()


def api_client_for(user: Any) -> APIClient:
    client = APIClient()
    from apps.security.tokens import api_token_create

    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user_id=user.pk, name='test').key}")
    return client


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a server-sent-events body; comment lines are skipped."""
    events = []
    for block in raw.decode().split("\n\n"):
        name, data = "message", None
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = json.loads(line[len("data: ") :])
        if data is not None:
            events.append((name, data))
    return events


def access_log(server: ServerProcess, method: str) -> list[dict[str, Any]]:
    """The server's access-log lines (one JSON object per call) for ``method``."""
    lines = []
    for line in server.log().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "rpc" and entry.get("method") == method:
            lines.append(entry)
    return lines


@pytest.fixture
def redis_servers() -> Iterator[dict[str, RedisServer]]:
    """The test stack's cache, broker and session Redis; all running again after the test."""
    stack = stack_from_state()
    servers = {"cache": stack.redis(), "broker": stack.redis_broker(), "sessions": stack.redis_sessions()}
    yield servers
    for server in servers.values():
        server.start()


def kill_redis(server: RedisServer) -> None:
    """SIGKILL: no shutdown save, only what the append-only file already holds survives."""
    os.kill(int(server.pid_file.read_text().strip()), signal.SIGKILL)
    wait_until(lambda: not server.is_running(), what=f"{server.name} to die")
