"""Start the whole platform on this machine for a load test, the way production runs it.

The embedded stack (``quantumquill.devstack``, dev profile: PostgreSQL x3 and
Redis) plus the processes that serve traffic: gunicorn with gthread workers
and the production configuration (``deploy/gunicorn.conf.py``; not the
development server), a Celery worker and the content-generation gRPC server. Logs go to ``var/loadtest/``. Everything this starts, it stops;
a stack that was already running is left running.

Not named ``platform``: Locust puts this folder first on ``sys.path`` while
it imports the locustfile, and the standard library's ``platform`` must win.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from quantumquill.devstack.run import app_processes
from quantumquill.devstack.stack import PROFILES, REPO_ROOT, Profile, Stack, free_port, stack_from_state
from quantumquill.devstack.web import GUNICORN_CONF


class PlatformError(RuntimeError):
    """The platform could not be started; the message says which part and where its log is."""


@dataclass(frozen=True)
class PlatformSettings:
    """``stack_dir`` None: the dev stack (var/devstack, kept). A folder: a throwaway stack there on free ports."""

    http_port: int = 8000  # 0: a free port
    stack_dir: Path | None = None
    app_workers: int = 2
    app_threads: int = 8
    celery_concurrency: int = 2
    seed_users: int = 200
    generations_per_user: int = 5
    token_interval_ms: int = 0
    # Workers recycle after this many requests, as in production (deploy/gunicorn.conf.py); 0 never
    # recycles them, which a soak needs: recycling would hide a leak.
    max_requests: int = 2000
    log_dir: Path = REPO_ROOT / "var" / "loadtest"


@dataclass
class _Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class LocalPlatform:
    """``start()`` brings everything up and returns what the load generator needs; ``stop()`` undoes it."""

    settings: PlatformSettings
    say: Callable[[str], None] = print
    children: list[_Child] = field(default_factory=list)
    stack: Stack | None = None
    stack_was_running: bool = False
    contentgen_target: str = ""
    contentgen_token: str = ""
    http_port: int = 0
    env: dict[str, str] = field(default_factory=dict)  # what the platform's processes run with (for manage.py)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def gunicorn_pidfile(self) -> Path:
        return self.settings.log_dir / "gunicorn.pid"

    def start(self) -> None:
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        self.http_port = self.settings.http_port or free_port()
        env = self._start_stack()
        # The stack names the generation service's address and token for every process; older stacks did not.
        self.contentgen_target = env.get("CONTENTGEN_TARGET") or f"127.0.0.1:{free_port()}"
        self.contentgen_token = env.get("CONTENTGEN_TOKEN") or secrets.token_urlsafe(32)
        env.update(
            {
                # A load test measures the production configuration, not DEBUG's query log and error pages.
                "DJANGO_DEBUG": "0",
                # Plain HTTP on loopback with no proxy in front: no redirect to HTTPS, no Secure-only cookies.
                "QQ_HTTPS": "0",
                "QQ_TRUST_PROXY_HEADERS": "0",
                "CONTENTGEN_TARGET": self.contentgen_target,
                "CONTENTGEN_TOKEN": self.contentgen_token,
                # Every simulated API client asks for its token from this one machine's address: the
                # per-address limit on token requests is meant for people, not for a load generator.
                "API_THROTTLE_TOKEN": "100000/min",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env = env
        self._prepare_data(env)
        self._start_contentgen(env)
        self._start_celery(env)
        self._start_gunicorn(env)
        self.say(f"Platform up: {self.url} (logs in {self._relative(self.settings.log_dir)})")

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        for child in reversed(self.children):
            try:
                child.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        self.children.clear()
        if self.stack is not None and not self.stack_was_running:
            self.say("Stopping the embedded servers ...")
            if self.stack.profile.fresh:
                self.stack.discard()  # a private platform's data goes (its next start would wipe it anyway)
            else:
                self.stack.down()
        self.stack = None

    # --- steps ---------------------------------------------------------------------------------------------

    def _start_stack(self) -> dict[str, str]:
        if self.settings.stack_dir is None:
            stack = Stack(PROFILES["dev"])
        else:
            stack = Stack(Profile("private", self.settings.stack_dir, durable=False, fresh=True))
        if stack.state_file.exists() and self.settings.stack_dir is None:
            try:
                self.stack_was_running = stack_from_state(stack.state_file).postgres("pg0").is_running()
            except (KeyError, ValueError, OSError):
                self.stack_was_running = False
        where = self._relative(stack.profile.data_dir)
        self.say(f"Starting the embedded PostgreSQL (3 servers) and Redis under {where} ...")
        try:
            stack_env = stack.up()
        except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
            raise PlatformError(f"the embedded stack did not start: {exc}; see {where}/*.log") from exc
        self.stack = stack
        return {**os.environ, **stack_env}

    def _prepare_data(self, env: dict[str, str]) -> None:
        self.say(f"Migrating and seeding {self.settings.seed_users} load users (skipped where already done) ...")
        for args in (
            ("migrate_shards", "-v", "0"),
            ("bootstrap_embedded",),
            (
                "seed_load_users",
                "--users",
                str(self.settings.seed_users),
                "--generations-per-user",
                str(self.settings.generations_per_user),
            ),
        ):
            log = self.settings.log_dir / "setup.log"
            with log.open("ab") as out:
                done = subprocess.run(
                    [sys.executable, "manage.py", *args], cwd=REPO_ROOT, env=env, stdout=out, stderr=out, check=False
                )
            if done.returncode != 0:
                raise PlatformError(f"`manage.py {' '.join(args)}` failed (exit {done.returncode}); see {log}")

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> _Child:
        log = self.settings.log_dir / f"{name}.log"
        with log.open("ab") as out:
            # A session of its own: Ctrl-C in the terminal reaches Locust first, and we stop these afterwards.
            process = subprocess.Popen(
                argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        child = _Child(name, process, log)
        self.children.append(child)
        return child

    def _wait(self, child: _Child, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if child.process.poll() is not None:
                raise PlatformError(
                    f"{child.name} exited with {child.process.returncode} while starting; see {child.log}"
                )
            if time.monotonic() > deadline:
                raise PlatformError(f"{child.name} was not ready after {timeout:.0f}s; see {child.log}")
            time.sleep(0.2)

    def _start_contentgen(self, env: dict[str, str]) -> None:
        self.say(f"Starting the generation service on {self.contentgen_target} ...")
        argv = [sys.executable, "-m", "contentgen_service", "serve", "--bind", self.contentgen_target]
        if self.settings.token_interval_ms:
            argv += ["--token-interval-ms", str(self.settings.token_interval_ms)]
        child = self._spawn("contentgen", argv, env)
        # The first start trains the model (a few seconds); later starts load the cached one.
        self._wait(child, lambda: grpc_serving(self.contentgen_target), timeout=120)

    def _start_celery(self, env: dict[str, str]) -> None:
        self.say("Starting a Celery worker ...")
        # The worker `make run` starts (quantumquill.devstack.run), sized for this run.
        processes = app_processes(env, celery_concurrency=self.settings.celery_concurrency)
        worker = next(process for process in processes if process.name == "worker")
        argv = [*worker.argv, "--without-gossip", "--without-mingle"]
        child = self._spawn("celery", argv, env)
        self._wait(child, lambda: b"ready." in child.log.read_bytes(), timeout=60)

    def _start_gunicorn(self, env: dict[str, str]) -> None:
        settings = self.settings
        self.say(f"Starting gunicorn (gthread, {settings.app_workers} workers x {settings.app_threads} threads) ...")
        # The production configuration (deploy/gunicorn.conf.py), sized by its environment variables.
        gunicorn_env = {
            **env,
            "GUNICORN_BIND": f"127.0.0.1:{self.http_port}",
            "GUNICORN_WORKERS": str(settings.app_workers),
            "GUNICORN_THREADS": str(settings.app_threads),
            "GUNICORN_MAX_REQUESTS": str(settings.max_requests),
            "GUNICORN_ACCESS_LOG": str(settings.log_dir / "access.log"),
            "QQ_INSTANCE_NAME": "loadtest",
        }
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(GUNICORN_CONF),
            "--pid",
            str(self.gunicorn_pidfile),
        ]
        child = self._spawn("gunicorn", argv, gunicorn_env)
        self._wait(child, lambda: http_ok(self.url + "/accounts/login/"), timeout=60)

    @staticmethod
    def _relative(path: Path) -> str:
        try:
            return str(path.relative_to(REPO_ROOT))
        except ValueError:
            return str(path)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def grpc_serving(target: str, timeout: float = 2.0) -> bool:
    """Whether the gRPC server at ``target`` reports SERVING (standard health checking)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
