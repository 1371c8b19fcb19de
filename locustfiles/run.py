"""``python -m locustfiles.run``: one command for QA and CI to load-test the platform.

    python -m locustfiles.run                                 # web UI on http://127.0.0.1:8089
    python -m locustfiles.run --headless --shape baseline     # for scripts; exit status = the verdict
    python -m locustfiles.run --host https://staging.example  # an already running platform

Without ``--host`` it uses the platform on http://127.0.0.1:8000 when one
answers there, and otherwise starts one (see ``localplatform.py``) and stops
it afterwards. Reports go to ``reports/<shape>-<time>/``. Exit status:
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

from .localplatform import LocalPlatform, PlatformError, PlatformSettings
from .options import DEFAULT_THRESHOLDS, SHAPES
from .thresholds import ThresholdsError, load_thresholds

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
DEFAULT_HOST = "http://127.0.0.1:8000"
USER_CLASSES = ("WebUser", "NewVisitor", "ApiUser", "GrpcUser")


class LaunchError(Exception):
    """The load test cannot start; the message says why and what to do."""


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
        "--user-classes",
        default=None,
        help=f"comma-separated user classes (default: all that the target supports of {', '.join(USER_CLASSES)})",
    )
    parser.add_argument("--thresholds", default=str(DEFAULT_THRESHOLDS), help="thresholds file (TOML)")
    parser.add_argument("--reports-dir", default=str(REPO_ROOT / "reports"), help="where reports are written")
    parser.add_argument("--web-port", type=int, default=8089, help="Locust web UI port (default 8089)")
    parser.add_argument("--contentgen-target", default=os.environ.get("CONTENTGEN_TARGET", ""), help="for GrpcUser")
    group = parser.add_argument_group("the platform started when none is running")
    group.add_argument("--seed-users", type=int, default=200, help="load users to seed (default 200)")
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


def choose_user_classes(
    requested: str | None, target: Target, grpc_ready: bool, say: Callable[[str], None]
) -> list[str]:
    if requested:
        names = [name.strip() for name in requested.split(",") if name.strip()]
        unknown = sorted(set(names) - set(USER_CLASSES))
        if unknown:
            raise LaunchError(f"unknown user class(es) {', '.join(unknown)}; choose from {', '.join(USER_CLASSES)}")
        return names
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
    if args.headless:
        command += ["--headless", "--only-summary"]
    else:
        command += ["--web-host", "127.0.0.1", "--web-port", str(args.web_port), "--class-picker"]
    extra = args.locust_args[1:] if args.locust_args[:1] == ["--"] else args.locust_args
    return [*command, *extra, *classes]


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
            # Locust got the same Ctrl-C (same terminal): let it write its reports and quit.
            process.send_signal(signal.SIGINT)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    platform: LocalPlatform | None = None
    try:
        load_thresholds(args.thresholds)
        if not args.headless and not port_free(args.web_port):
            raise LaunchError(f"port {args.web_port} is in use (another Locust web UI?); pass --web-port N")
        env = dict(os.environ)
        app_pid: int | None = None
        if args.host:
            try:
                target = probe(normalise_host(args.host))
            except LaunchError as exc:
                raise LaunchError(
                    f"{exc} Check --host, or leave it out to start the platform on this machine."
                ) from None
        else:
            try:
                target = probe(DEFAULT_HOST)
                _say(f"Using the platform already running at {DEFAULT_HOST} (server: {target.server or 'unknown'}).")
            except LaunchError as exc:
                if args.no_start:
                    raise LaunchError(
                        f"the platform is not up: {exc} Start it with `make run`, or drop --no-start."
                    ) from None
                settings = PlatformSettings(
                    seed_users=args.seed_users,
                    app_workers=args.app_workers,
                    app_threads=args.app_threads,
                    token_interval_ms=args.token_interval_ms,
                )
                platform = LocalPlatform(settings, say=_say)
                platform.start()
                target = probe(platform.url)
                args.contentgen_target = platform.contentgen_target
                env["CONTENTGEN_TOKEN"] = platform.contentgen_token
                app_pid = (
                    int(platform.gunicorn_pidfile.read_text().strip()) if platform.gunicorn_pidfile.exists() else None
                )
        grpc_ready = bool(args.contentgen_target and env.get("CONTENTGEN_TOKEN"))
        classes = choose_user_classes(args.user_classes, target, grpc_ready, _say)
        shape = args.shape or ("baseline" if args.headless else "ui")
        report_dir = Path(args.reports_dir).resolve() / f"{shape}-{time.strftime('%Y%m%d-%H%M%S')}"
        report_dir.mkdir(parents=True, exist_ok=True)
        command = locust_command(args, target.host, classes, report_dir, app_pid)
        web_url = None if args.headless else f"http://127.0.0.1:{args.web_port}"
        code = _run_locust(command, env, web_url)
        _say(f"Reports: {report_dir}")
        return code
    except (LaunchError, ThresholdsError, PlatformError) as exc:
        sys.stderr.write(f"loadtest: {exc}\n")
        return 2 if isinstance(exc, ThresholdsError) else 1
    except KeyboardInterrupt:
        sys.stderr.write("loadtest: interrupted\n")
        return 130
    finally:
        if platform is not None:
            platform.stop()


if __name__ == "__main__":
    sys.exit(main())
