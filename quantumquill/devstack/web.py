"""Run the web tier locally as in production: gunicorn app servers behind an nginx load balancer.

The end-to-end tests and the session benchmark start these as real processes
on loopback ports; each writes its logs into a folder of its own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from deploy.render_nginx import NginxSettings, render_nginx_conf

from .stack import REPO_ROOT

GUNICORN_CONF = REPO_ROOT / "deploy" / "gunicorn.conf.py"


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        raise RuntimeError("nginx is not installed; run scripts/system-deps.sh (Debian: apt-get install nginx-light).")
    return found


def _wait_http(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with code {process.returncode} while starting:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f}s:\n{_tail(log)}")
        time.sleep(0.1)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@dataclass
class GunicornServer:
    """One app server: ``gunicorn -c deploy/gunicorn.conf.py`` on 127.0.0.1:``port`` in its own process group."""

    name: str
    port: int
    env: dict[str, str]
    log_dir: Path
    workers: int = 1
    threads: int = 4
    cpus: frozenset[int] | None = None  # pin master and workers to these CPUs (benchmarks)
    # Benchmarks: listen on this address, inside this network namespace (`ip netns exec`), and start inside
    # these cgroups (each a cgroup.procs file), so the master and every worker it forks share the CPU cap.
    host: str = "127.0.0.1"
    netns: str = ""
    cgroup_procs: tuple[Path, ...] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"gunicorn-{self.name}.log"

    def start(self, *, timeout: float = 60) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_file.open("ab")
        env = {
            **self.env,
            "GUNICORN_BIND": f"{self.host}:{self.port}",
            "GUNICORN_WORKERS": str(self.workers),
            "GUNICORN_THREADS": str(self.threads),
            "GUNICORN_GRACEFUL_TIMEOUT": self.env.get("GUNICORN_GRACEFUL_TIMEOUT", "5"),
            "QQ_INSTANCE_NAME": self.name,
        }
        in_netns = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.process = subprocess.Popen(
            [*in_netns, sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF)],
            cwd=REPO_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill() takes the master and workers at once
            preexec_fn=self._prepare if self.cpus or self.cgroup_procs else None,
        )
        _wait_http(f"{self.url}/healthz", self.process, self.log_file, timeout)

    def _prepare(self) -> None:
        for procs in self.cgroup_procs:
            procs.write_text(str(os.getpid()))
        if self.cpus:
            os.sched_setaffinity(0, self.cpus)

    def kill(self) -> None:
        """Crash: SIGKILL the master and every worker, as a lost machine would."""
        self._signal_group(signal.SIGKILL)
        self._reap(10)

    def stop(self, *, timeout: float = 20) -> None:
        """Graceful stop (SIGTERM: workers finish their requests), killing whatever is left after ``timeout``."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self._signal_group(signal.SIGKILL)
        self._reap(10)

    def _signal_group(self, signum: int) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def _reap(self, timeout: float) -> None:
        if self.process is not None:
            self.process.wait(timeout=timeout)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


@dataclass
class NginxBalancer:
    """nginx (non-daemon, its own prefix, pid and logs under ``work_dir``) balancing the given upstreams."""

    port: int
    upstreams: list[str]
    work_dir: Path
    fail_timeout: str = "2s"
    # HTTPS on this port with this certificate and key (PEM files), besides plain HTTP on ``port``.
    tls_port: int | None = None
    tls_files: tuple[Path, Path] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def https_url(self) -> str:
        if self.tls_port is None:
            raise RuntimeError("This nginx serves no HTTPS: give it tls_port and tls_files.")
        return f"https://127.0.0.1:{self.tls_port}"

    @property
    def access_log(self) -> Path:
        return self.work_dir / "access.log"

    @property
    def error_log(self) -> Path:
        return self.work_dir / "error.log"

    def settings(self) -> NginxSettings:
        import getpass

        return NginxSettings(
            upstreams=self.upstreams,
            listen=f"127.0.0.1:{self.port}",
            server_name="localhost",
            # The master drops to this user for its workers only when it runs as root.
            user=getpass.getuser() if os.geteuid() == 0 else "",
            worker_processes="1",
            pid_file=str(self.work_dir / "nginx.pid"),
            error_log=str(self.error_log),
            access_log=str(self.access_log),
            temp_dir=str(self.work_dir / "tmp"),
            max_fails=1,
            fail_timeout=self.fail_timeout,
            connect_timeout="1s",
            next_upstream_tries=len(self.upstreams),
            tls_listen=f"127.0.0.1:{self.tls_port}" if self.tls_port and self.tls_files else "",
            tls_certificate=str(self.tls_files[0]) if self.tls_port and self.tls_files else "",
            tls_certificate_key=str(self.tls_files[1]) if self.tls_port and self.tls_files else "",
        )

    def start(self, *, timeout: float = 15) -> None:
        (self.work_dir / "tmp").mkdir(parents=True, exist_ok=True)
        conf = self.work_dir / "nginx.conf"
        conf.write_text(render_nginx_conf(self.settings()))
        self.process = subprocess.Popen(
            [nginx_binary(), "-p", str(self.work_dir), "-c", str(conf), "-e", str(self.error_log), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not self.access_log.exists() or not _accepts(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with code {self.process.returncode}:\n{_tail(self.error_log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not listen on {self.port}:\n{_tail(self.error_log)}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish open requests
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


def _accepts(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
