"""Command line: ``python -m contentgen_service serve [options]``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from contentgen_service.config import (
    OPTIONS,
    SECRET_ENV,
    ConfigError,
    add_arguments,
    config_from,
)
from contentgen_service.logs import configure_logging


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``contentgen_service`` command."""
    parser = argparse.ArgumentParser(
        prog="python -m contentgen_service",
        description="QuantumQuill content-generation gRPC service.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run the gRPC server until SIGTERM",
        description="Run the contentgen.v1 gRPC server. Every option can also be "
        "set by the environment "
        "variable shown in brackets; a flag wins over the variable.",
        epilog="Secrets come from the environment only: "
        + ", ".join(SECRET_ENV)
        + f". All variables: {', '.join(option.env for option in OPTIONS)}.",
    )
    add_arguments(serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for configuration errors)."""
    args = build_parser().parse_args(argv)
    try:
        config = config_from(args, os.environ)
    except ConfigError as exc:
        sys.stderr.write(f"contentgen: configuration error: {exc}\n")
        return 2
    configure_logging(config.log_level)
    from contentgen_service.server import serve

    try:
        return serve(config)
    except ConfigError as exc:
        sys.stderr.write(f"contentgen: cannot start: {exc}\n")
        return 2
