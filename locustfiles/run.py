"""``python -m locustfiles.run``: one command for QA and CI to load-test the platform.

    python -m locustfiles.run                                 # web UI on http://127.0.0.1:8089
    python -m locustfiles.run --headless --shape baseline     # for scripts; exit status = the verdict
    python -m locustfiles.run --host https://staging.example  # an already running platform
    python -m locustfiles.run --workers 4                     # a master and 4 worker processes (distributed.py)
    python -m locustfiles.run --master-host 10.0.0.5 --workers 8   # 8 more workers here, for that master

Without ``--host`` it uses the platform on http://127.0.0.1:8000 (or
``$QQ_LOADTEST_HOST``) when one answers there, and otherwise starts one there
(see ``localplatform.py``) and stops it afterwards. Reports go to ``reports/<shape>-<time>/``. Exit status:
Locust's (0 when the thresholds are met), 1 when the target cannot be used,
2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import webbrowser
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .distributed import (
    DEFAULT_MASTER_PORT,
    MasterSettings,
    WorkerPool,
    master_arguments,
    worker_command,
    worker_request_log,
)
from .localplatform import LocalPlatform, PlatformError, PlatformSettings
from .options import DEFAULT_THRESHOLDS, SHAPES
from .thresholds import ThresholdsError, load_thresholds

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
# Where the platform is looked for when --host is not given (and started, on this port, when nothing answers).
DEFAULT_HOST = os.environ.get("QQ_LOADTEST_HOST", "http://127.0.0.1:8000")
USER_CLASSES = ("WebUser", "NewVisitor", "ApiUser", "GrpcUser")


class LaunchError(Exception):
    """The load test cannot start; the message says why and what to do."""


class Terminated(BaseException):
    """SIGTERM arrived (a CI timeout, a supervisor): stop Locust and the platform cleanly, like Ctrl-C."""


def _raise_terminated(_signum: int, _frame: object) -> None:
    raise Terminated()


@dataclass(frozen=True)
class Target:
    host: str
    api_available: bool
    server: str


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m locustfiles.run",
        description="Load-test QuantumQuill with Locust: the web UI for QA, or a headless run for scripts and CI.",
        epilog="Anything after -- goes to Locust unchanged (e.g. -- --baseline-users 30 --run-seconds 600).",
    )
    parser.add_argument("--shape", choices=SHAPES, default=None, help="load shape (headless default: baseline)")
    parser.add_argument("--headless", action="store_true", help="no web UI: run the shape, print and write reports")
    parser.add_argument("--host", default=None, help=f"platform URL (default {DEFAULT_HOST}, started if not up)")
    parser.add_argument("--no-start", action="store_true", help="never start the platform; fail if it is not up")
    parser.add_argument(
        "--private-platform",
        metavar="DIR",
        default=None,
        help="always start a throwaway platform with its own stack in DIR on free ports (CI; ignores port 8000)",
    )
    parser.add_argument(
        "--user-classes",
        default=None,
        help=f"comma-separated user classes (default: all that the target supports of {', '.join(USER_CLASSES)})",
    )
    parser.add_argument("--thresholds", default=str(DEFAULT_THRESHOLDS), help="thresholds file (TOML)")
    parser.add_argument("--reports-dir", default=str(REPO_ROOT / "reports"), help="where reports are written")
    parser.add_argument("--web-port", type=int, default=8089, help="Locust web UI port (default 8089)")
    parser.add_argument("--contentgen-target", default=os.environ.get("CONTENTGEN_TARGET", ""), help="for GrpcUser")
    parser.add_argument(
        "--request-log",
        metavar="FILE",
        default="",
        help="one CSV line per request; with workers, each writes its own (FILE.workerN.csv)",
    )
    spread = parser.add_argument_group("distributed load generation (a master and worker processes)")
    spread.add_argument(
        "--workers",
        type=int,
        default=0,
        help="worker processes to start here (default 0: one Locust process does everything)",
    )
    spread.add_argument(
        "--expect-workers",
        type=int,
        default=None,
        help="headless: workers to wait for before starting, local and remote (default: --workers)",
    )
    spread.add_argument(
        "--master-bind-host",
        default="127.0.0.1",
        help="address the master listens on for workers (0.0.0.0 to let workers on other hosts join)",
    )
    spread.add_argument(
        "--master-port", type=int, default=DEFAULT_MASTER_PORT, help=f"master's port (default {DEFAULT_MASTER_PORT})"
    )
    spread.add_argument(
        "--master-host",
        default=None,
        help="run only --workers workers (default 1) for the master on this host; no platform, no reports here",
    )
    group = parser.add_argument_group("the platform started when none is running")
    parser.add_argument(
        "--seed-users",
        type=int,
        default=200,
        help="load users seeded when the platform is started here, and the accounts users spread over (default 200)",
    )
    group.add_argument("--app-workers", type=int, default=2, help="gunicorn workers (default 2)")
    group.add_argument("--app-threads", type=int, default=8, help="threads per gunicorn worker (default 8)")
    group.add_argument("--token-interval-ms", type=int, default=0, help="pace the generation service (default 0)")
    parser.add_argument("locust_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


def normalise_host(raw: str) -> str:
    parsed = urllib.parse.urlsplit(raw.strip())
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise LaunchError(
            f"--host {raw!r} is not a URL; expected something like {DEFAULT_HOST} or https://staging.example"
        )
    return f"{parsed.scheme}://{parsed.netloc}{parsed.path.rstrip('/')}"


def probe(host: str, timeout: float = 5.0) -> Target:
    """Check that ``host`` answers like QuantumQuill: a login form with a CSRF token. Raises LaunchError if not."""
    try:
        with urllib.request.urlopen(host + "/accounts/login/", timeout=timeout) as response:
            body = response.read(200_000).decode(errors="replace")
            server = response.headers.get("Server", "")
    except urllib.error.HTTPError as exc:
        raise LaunchError(
            f"{host} answered GET /accounts/login/ with HTTP {exc.code}: is this QuantumQuill? Check --host."
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise LaunchError(f"nothing answers at {host} ({reason}).") from None
    if "csrfmiddlewaretoken" not in body:
        raise LaunchError(f"{host}/accounts/login/ has no login form with a CSRF token: is this QuantumQuill?")
    return Target(host, _api_available(host, timeout), server)


def _api_available(host: str, timeout: float) -> bool:
    try:
        with urllib.request.urlopen(host + "/api/v1/schema/", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def requested_user_classes(requested: str | None) -> list[str]:
    names = [name.strip() for name in (requested or "").split(",") if name.strip()]
    unknown = sorted(set(names) - set(USER_CLASSES))
    if unknown:
        raise LaunchError(f"unknown user class(es) {', '.join(unknown)}; choose from {', '.join(USER_CLASSES)}")
    return names


def choose_user_classes(
    requested: str | None, target: Target, grpc_ready: bool, say: Callable[[str], None]
) -> list[str]:
    if requested:
        return requested_user_classes(requested)
    names = list(USER_CLASSES)
    if not target.api_available:
        say(f"The JSON API is not deployed at {target.host} (GET /api/v1/schema/ failed): ApiUser left out.")
        names.remove("ApiUser")
    if not grpc_ready:
        say("No generation service to drive (--contentgen-target and $CONTENTGEN_TOKEN): GrpcUser left out.")
        names.remove("GrpcUser")
    return names


def locust_command(
    args: argparse.Namespace, host: str, classes: list[str], report_dir: Path, app_pid: int | None
) -> list[str]:
    shape = args.shape or ("baseline" if args.headless else "")
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--host",
        host,
        "--thresholds",
        str(Path(args.thresholds).resolve()),
        "--report-dir",
        str(report_dir),
        "--account-count",
        str(args.seed_users),
        "--csv",
        str(report_dir / "stats"),
        "--html",
        str(report_dir / "report.html"),
    ]
    if shape:
        command += ["--shape", shape]
    if args.contentgen_target:
        command += ["--contentgen-target", args.contentgen_target]
    if app_pid:
        command += ["--app-pid", str(app_pid)]
    if args.request_log and not distributed(args):
        command += ["--request-log", str(Path(args.request_log).resolve())]
    if distributed(args):
        expect = args.expect_workers if args.expect_workers is not None else args.workers
        master = MasterSettings(bind_host=args.master_bind_host, port=args.master_port, expect_workers=expect)
        command += master_arguments(master, headless=args.headless)
    if args.headless:
        command += ["--headless", "--only-summary"]
    else:
        command += ["--web-host", "127.0.0.1", "--web-port", str(args.web_port), "--class-picker"]
    extra = args.locust_args[1:] if args.locust_args[:1] == ["--"] else args.locust_args
    return [*command, *extra, *classes]


def distributed(args: argparse.Namespace) -> bool:
    """A master and workers rather than one process: workers are started here or expected from elsewhere."""
    return bool(args.workers or args.expect_workers)


def check_distributed(args: argparse.Namespace) -> None:
    """Refuse worker settings that cannot work, before anything starts."""
    if args.workers < 0:
        raise LaunchError(f"--workers must be 0 or more, got {args.workers}")
    if args.expect_workers is not None and args.expect_workers < max(1, args.workers):
        raise LaunchError(
            f"--expect-workers {args.expect_workers} is fewer than the {max(1, args.workers)} worker(s) started "
            "here; leave it out, or give the total of local and remote workers"
        )
    if args.master_host is None and distributed(args) and not port_free(args.master_port):
        raise LaunchError(f"port {args.master_port} is in use (another Locust master?); pass --master-port N")


def local_workers(args: argparse.Namespace, master_host: str, classes: list[str], env: dict[str, str]) -> WorkerPool:
    count = args.workers or (1 if args.master_host else 0)
    log = str(Path(args.request_log).resolve()) if args.request_log else ""
    commands = [
        worker_command(
            LOCUSTFILE,
            master_host=master_host,
            master_port=args.master_port,
            classes=classes,
            request_log=worker_request_log(log, index) if log else "",
        )
        for index in range(1, count + 1)
    ]
    return WorkerPool(commands, REPO_ROOT, env)


def _run_workers_only(args: argparse.Namespace) -> int:
    """Workers for a master elsewhere: they run until it quits (or Ctrl-C here)."""
    classes = requested_user_classes(args.user_classes) or list(USER_CLASSES)
    pool = local_workers(args, args.master_host, classes, dict(os.environ))
    _say(f"{len(pool.commands)} worker(s) joining the master at {args.master_host}:{args.master_port}")
    pool.start()
    try:
        while True:
            try:
                return pool.wait()
            except (KeyboardInterrupt, Terminated):
                for process in pool.processes:
                    process.send_signal(signal.SIGINT)
    finally:
        pool.stop(grace=10)


def _say(message: str) -> None:
    print(message, flush=True)


def _run_locust(command: list[str], env: dict[str, str], web_url: str | None) -> int:
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env)
    if web_url:
        _say(f"\nLocust web UI: {web_url}  (pick the user classes and a shape, then Start; Ctrl-C here ends it)\n")
        if os.environ.get("DISPLAY") or sys.platform == "darwin":
            time.sleep(1.5)
            webbrowser.open(web_url)
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            # Locust got the same Ctrl-C (same terminal); make sure, then let it write its reports and quit.
            process.send_signal(signal.SIGINT)
        except Terminated:
            # Locust treats SIGINT as Ctrl-C: it writes every report, the HTML one included (not on SIGTERM).
            process.send_signal(signal.SIGINT)


@dataclass
class Launch:
    """What the run targets, and the platform this launcher started (stopped at the end), if any."""

    target: Target | None = None
    platform: LocalPlatform | None = None
    app_pid: int | None = None


def _start_platform(args: argparse.Namespace, launch: Launch, env: dict[str, str]) -> None:
    private = Path(args.private_platform).resolve() if args.private_platform else None
    settings = PlatformSettings(
        http_port=0 if private else (urllib.parse.urlsplit(DEFAULT_HOST).port or 80),
        stack_dir=private / "stack" if private else None,
        log_dir=private / "logs" if private else PlatformSettings.log_dir,
        seed_users=args.seed_users,
        app_workers=args.app_workers,
        app_threads=args.app_threads,
        token_interval_ms=args.token_interval_ms,
        # A soak looks for leaks: recycled workers would hide them.
        max_requests=0 if args.shape == "soak" else PlatformSettings.max_requests,
    )
    launch.platform = LocalPlatform(settings, say=_say)
    launch.platform.start()
    launch.target = probe(launch.platform.url)
    args.contentgen_target = launch.platform.contentgen_target
    env["CONTENTGEN_TOKEN"] = launch.platform.contentgen_token
    pidfile = launch.platform.gunicorn_pidfile
    launch.app_pid = int(pidfile.read_text().strip()) if pidfile.exists() else None


def _find_target(args: argparse.Namespace, launch: Launch, env: dict[str, str]) -> None:
    if args.private_platform:
        _start_platform(args, launch, env)
        return
    if args.host:
        try:
            launch.target = probe(normalise_host(args.host))
        except LaunchError as exc:
            raise LaunchError(f"{exc} Check --host, or leave it out to start the platform on this machine.") from None
        return
    try:
        launch.target = probe(DEFAULT_HOST)
        _say(f"Using the platform already running at {DEFAULT_HOST} (server: {launch.target.server or 'unknown'}).")
    except LaunchError as exc:
        if args.no_start:
            raise LaunchError(f"the platform is not up: {exc} Start it with `make run`, or drop --no-start.") from None
        if urllib.parse.urlsplit(DEFAULT_HOST).hostname not in ("127.0.0.1", "localhost"):
            raise LaunchError(
                f"the platform is not up: {exc} Only a platform on this machine can be started here."
            ) from None
        _start_platform(args, launch, env)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    launch = Launch()
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        load_thresholds(args.thresholds)
        requested_user_classes(args.user_classes)  # bad names fail here, before anything starts
        check_distributed(args)
        if args.master_host:
            return _run_workers_only(args)
        if not args.headless and not port_free(args.web_port):
            raise LaunchError(f"port {args.web_port} is in use (another Locust web UI?); pass --web-port N")
        env = dict(os.environ)
        _find_target(args, launch, env)
        assert launch.target is not None
        grpc_ready = bool(args.contentgen_target and env.get("CONTENTGEN_TOKEN"))
        classes = choose_user_classes(args.user_classes, launch.target, grpc_ready, _say)
        shape = args.shape or ("baseline" if args.headless else "ui")
        report_dir = Path(args.reports_dir).resolve() / f"{shape}-{time.strftime('%Y%m%d-%H%M%S')}"
        report_dir.mkdir(parents=True, exist_ok=True)
        command = locust_command(args, launch.target.host, classes, report_dir, launch.app_pid)
        web_url = None if args.headless else f"http://127.0.0.1:{args.web_port}"
        workers = local_workers(args, "127.0.0.1", classes, env) if args.workers else None
        if workers is not None:
            _say(f"Master on {args.master_bind_host}:{args.master_port}, {args.workers} local worker(s)")
            workers.start()
        try:
            code = _run_locust(command, env, web_url)
        finally:
            if workers is not None:
                workers.stop()
        _say(f"Reports: {report_dir}")
        return code
    except (LaunchError, ThresholdsError, PlatformError) as exc:
        sys.stderr.write(f"loadtest: {exc}\n")
        return 2 if isinstance(exc, ThresholdsError) else 1
    except (KeyboardInterrupt, Terminated):
        sys.stderr.write("loadtest: interrupted\n")
        return 130
    finally:
        if launch.platform is not None:
            launch.platform.stop()


if __name__ == "__main__":
    sys.exit(main())
