"""Our command-line options for Locust, and a typed view of them.

Options marked for the web UI appear under "Custom parameters" on the start
form, so QA can change a shape's size without editing files. Secrets (the
contentgen token, the load accounts' password) come from the environment
only, never from the command line.
"""

from __future__ import annotations

import os
from argparse import Namespace
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

SHAPES = ("baseline", "stress", "spike", "soak")
DEFAULT_THRESHOLDS = Path(__file__).resolve().parent / "thresholds.toml"
PASSWORD_ENV = "QQ_LOAD_PASSWORD"
DEFAULT_PASSWORD = "quantumquill-load"


def add_arguments(parser: Any) -> None:
    """Register our options on Locust's parser (called from the init_command_line_parser event)."""
    # Locust's parser (not an argument group) understands include_in_web_ui.
    group = parser
    group.add_argument(
        "--shape",
        choices=("", *SHAPES),
        default="",
        include_in_web_ui=False,
        help="load shape for headless runs; in the web UI pick it from the shape drop-down instead",
    )
    group.add_argument(
        "--thresholds",
        default=str(DEFAULT_THRESHOLDS),
        include_in_web_ui=False,
        help="TOML file with the service-level thresholds checked when Locust quits",
    )
    group.add_argument(
        "--report-dir",
        default="",
        include_in_web_ui=False,
        help="folder for summary.json / summary.md and the shape's own CSV (steps, memory samples)",
    )
    group.add_argument(
        "--request-log",
        default="",
        include_in_web_ui=False,
        help="write one CSV line per request to this file (the timeline for scripts/migration_under_load.py)",
    )
    group.add_argument("--account-prefix", default="load", help="seeded accounts are PREFIX1..PREFIXN")
    group.add_argument("--account-count", type=int, default=200, help="how many seeded accounts to spread users over")
    group.add_argument(
        "--contentgen-target",
        default=os.environ.get("CONTENTGEN_TARGET", ""),
        help="gRPC target of the generation service for GrpcUser (token from $CONTENTGEN_TOKEN)",
    )
    group.add_argument("--max-tokens", type=int, default=48, help="max_tokens of the generations users ask for")
    group.add_argument(
        "--app-pid",
        type=int,
        default=0,
        include_in_web_ui=False,
        help="gunicorn master PID for the soak's memory samples (default: find it in /proc)",
    )
    group.add_argument("--baseline-users", type=int, default=10, help="users of the baseline and soak shapes")
    group.add_argument(
        "--run-seconds", type=int, default=0, help="baseline/soak length (0: 300 s baseline, 3600 s soak)"
    )
    group.add_argument("--ramp-seconds", type=int, default=10, help="seconds to ramp up to the first level")
    group.add_argument("--stress-start-users", type=int, default=5, help="stress: users of the first step")
    group.add_argument("--stress-step-users", type=int, default=5, help="stress: users added per step")
    group.add_argument("--stress-step-seconds", type=int, default=60, help="stress: length of each step")
    group.add_argument("--stress-max-users", type=int, default=200, help="stress: stop here even if nothing broke")
    group.add_argument("--spike-users", type=int, default=50, help="spike: users during the spike")
    group.add_argument("--spike-seconds", type=int, default=60, help="spike: length of the spike")
    group.add_argument("--soak-sample-seconds", type=int, default=30, help="soak: seconds between memory samples")


@dataclass(frozen=True)
class LoadOptions:
    shape: str = ""
    thresholds: str = str(DEFAULT_THRESHOLDS)
    report_dir: str = ""
    request_log: str = ""
    account_prefix: str = "load"
    account_count: int = 200
    contentgen_target: str = ""
    max_tokens: int = 48
    app_pid: int = 0
    baseline_users: int = 10
    run_seconds: int = 0
    ramp_seconds: int = 10
    stress_start_users: int = 5
    stress_step_users: int = 5
    stress_step_seconds: int = 60
    stress_max_users: int = 200
    spike_users: int = 50
    spike_seconds: int = 60
    soak_sample_seconds: int = 30

    @classmethod
    def from_parsed(cls, parsed: Namespace | None) -> LoadOptions:
        """The options as Locust parsed them (the web UI updates them when a test starts)."""
        values: dict[str, Any] = {}
        for item in fields(cls):
            value = getattr(parsed, item.name, None) if parsed is not None else None
            if value is not None:
                values[item.name] = type(getattr(cls, item.name))(value)
        return cls(**values)

    @property
    def account_password(self) -> str:
        return os.environ.get(PASSWORD_ENV) or DEFAULT_PASSWORD

    @property
    def contentgen_token(self) -> str:
        return os.environ.get("CONTENTGEN_TOKEN", "")
