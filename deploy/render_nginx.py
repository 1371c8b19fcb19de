"""Fill in deploy/nginx.conf: the upstream servers, ports and paths of one deployment (or one test).

python deploy/render_nginx.py --upstream 10.0.0.11:8000 --upstream 10.0.0.12:8000 > /etc/nginx/nginx.conf
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parent / "nginx.conf"
_PLACEHOLDER = re.compile(r"{{\s*([a-z_]+)\s*}}")
_UPSTREAM = re.compile(r"^(unix:/\S+|\[[0-9A-Fa-f:.]+\]:\d{1,5}|[A-Za-z0-9.-]+:\d{1,5})$")


class NginxConfigError(ValueError):
    """A value that would produce a broken nginx configuration."""


@dataclass(frozen=True)
class NginxSettings:
    """Everything that differs between deployments; defaults suit a Debian host running nginx as a service."""

    upstreams: Sequence[str] = field(default_factory=list)
    listen: str = "80"
    server_name: str = "_"
    user: str = "www-data"
    worker_processes: str = "auto"
    pid_file: str = "/run/nginx.pid"
    error_log: str = "/var/log/nginx/error.log"
    access_log: str = "/var/log/nginx/access.log"
    temp_dir: str = "/var/lib/nginx"
    max_fails: int = 2
    fail_timeout: str = "10s"
    keepalive: int = 32
    connect_timeout: str = "2s"
    read_timeout: str = "60s"
    next_upstream_tries: int = 3
    next_upstream_timeout: str = "15s"
    # HTTPS: all three, or none (then TLS ends before nginx, e.g. at a cloud load balancer).
    tls_listen: str = ""
    tls_certificate: str = ""
    tls_certificate_key: str = ""


def _values(settings: NginxSettings) -> dict[str, str]:
    if not settings.upstreams:
        raise NginxConfigError("At least one upstream app server (HOST:PORT) is needed.")
    for upstream in settings.upstreams:
        if not _UPSTREAM.match(upstream):
            raise NginxConfigError(f"Upstream {upstream!r} is not HOST:PORT, [IPv6]:PORT or unix:/path.")
    for name, value in asdict(settings).items():
        if isinstance(value, str) and re.search(r"[;{}\s]", value) and name != "upstreams":
            raise NginxConfigError(f"{name}={value!r} contains whitespace, ';' or braces.")
    tls = (settings.tls_listen, settings.tls_certificate, settings.tls_certificate_key)
    if any(tls) and not all(tls):
        raise NginxConfigError("HTTPS needs --tls-listen, --tls-certificate and --tls-certificate-key together.")
    values = {name: str(value) for name, value in asdict(settings).items() if name not in {"upstreams", "user"}}
    values["tls_directives"] = (
        f"listen {settings.tls_listen} ssl;\n"
        f"        ssl_certificate {settings.tls_certificate};\n"
        f"        ssl_certificate_key {settings.tls_certificate_key};\n"
        "        ssl_protocols TLSv1.2 TLSv1.3;\n"
        "        ssl_prefer_server_ciphers off;\n"
        "        ssl_session_cache shared:qq_tls:10m;\n"
        "        ssl_session_timeout 1d;"
        if all(tls)
        else "# HTTPS: off (render with --tls-listen, --tls-certificate and --tls-certificate-key to serve it)."
    )
    values["user_directive"] = f"user {settings.user};" if settings.user else ""
    values["upstream_servers"] = "\n".join(
        f"        server {upstream} max_fails={settings.max_fails} fail_timeout={settings.fail_timeout};"
        for upstream in settings.upstreams
    )
    return values


def render_nginx_conf(settings: NginxSettings, template: str | None = None) -> str:
    """The template with every placeholder filled; an unknown placeholder is an error, never left in."""
    values = _values(settings)
    text = TEMPLATE.read_text() if template is None else template

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise NginxConfigError(f"The template uses {{{{ {name} }}}}, which has no value.")
        return values[name]

    return _PLACEHOLDER.sub(fill, text)


def main(argv: Sequence[str] | None = None) -> int:
    defaults = NginxSettings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--upstream", action="append", required=True, help="app server HOST:PORT (repeat)")
    for name, value in asdict(defaults).items():
        if name != "upstreams":
            parser.add_argument(f"--{name.replace('_', '-')}", default=value, type=type(value), help=f"default {value}")
    args = vars(parser.parse_args(argv))
    args["upstreams"] = args.pop("upstream")
    try:
        sys.stdout.write(render_nginx_conf(NginxSettings(**args)))
    except NginxConfigError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
