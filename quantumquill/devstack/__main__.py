"""Command line for the embedded stack: ``python -m quantumquill.devstack {run,observe,up,down,env,exec}``."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from dataclasses import replace

from .observe import PROMETHEUS_PORT, observe
from .preflight import DevstackError
from .run import run
from .stack import DEFAULT_TOPOLOGY, PROFILES, Stack, private_profile, scaleout_topology, stack_from_state


def _topology_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--shard-servers",
        type=int,
        default=0,
        metavar="N",
        help="run N shard servers pg1..pgN (one shard database each, every user on shard1 at first, the control "
        "database on pg1 beside shard1); default: the usual 3-server topology",
    )
    parser.add_argument(
        "--cpu-cap",
        type=float,
        default=None,
        metavar="CPUS",
        help="put each PostgreSQL server in a cgroup v1 of its own, shard servers capped at CPUS (e.g. 0.25); "
        "needs root and /sys/fs/cgroup/cpu",
    )


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except DevstackError as exc:
        # One line naming the cause and the fix: a newcomer's first `make run` must not end in a traceback.
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quantumquill.devstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser(
        "run", help="start the servers, migrate, seed demo users and serve http://127.0.0.1:8000"
    )
    run_parser.add_argument(
        "--pgbouncer",
        action="store_true",
        help="the app reaches each PostgreSQL server through PgBouncer (transaction mode)",
    )
    ob = sub.add_parser("observe", help="start Prometheus scraping the platform `run` started, with the alert rules")
    ob.add_argument("--port", type=int, default=PROMETHEUS_PORT, help=f"Prometheus's port (default {PROMETHEUS_PORT})")
    for name, text in (("up", "start the servers and print their env"), ("down", "stop the servers")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--profile", choices=sorted(PROFILES), default="dev", help="dev (kept) or test (fresh)")
        if name == "up":
            _topology_arguments(p)
    ex = sub.add_parser("exec", help="start the servers, run a command with their env, stop the servers")
    ex.add_argument("--profile", choices=sorted(PROFILES), default="test", help="dev (kept) or test (fresh)")
    _topology_arguments(ex)
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help="the command, after --")
    args = parser.parse_args(argv)

    if args.command == "run":
        return run(pgbouncer=args.pgbouncer)
    if args.command == "observe":
        return observe(port=args.port)
    # A test stack started by hand lives in a sub-folder of its own, beside the private ones of test runs.
    by_hand = (
        PROFILES[args.profile]
        if args.profile == "dev"
        else replace(PROFILES[args.profile], data_dir=PROFILES[args.profile].data_dir / "manual")
    )
    topology = (
        DEFAULT_TOPOLOGY if args.command == "down" or not args.shard_servers else scaleout_topology(args.shard_servers)
    )
    cpu_cap = None if args.command == "down" else args.cpu_cap
    if args.command == "up":
        env = Stack(by_hand, topology=topology, cpu_cap=cpu_cap).up()
        for key, value in env.items():
            print(f"export {key}={shlex.quote(value)}")
        return 0
    if args.command == "down":
        stack = Stack(by_hand)
        if stack.state_file.exists():
            stack_from_state(stack.state_file).down()
        return 0
    cmd = [part for part in args.cmd if part != "--"] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("exec needs a command after --")
    profile = PROFILES[args.profile]
    if profile.fresh:
        profile = private_profile(profile, f"run-{os.getpid()}")
    stack = Stack(profile, topology=topology, cpu_cap=cpu_cap)
    env = {**os.environ, **stack.up()}
    try:
        return subprocess.call(cmd, env=env)
    finally:
        if profile.fresh:
            stack.discard()  # a private run's files go with it (also from /var/tmp in a root-only clone)
        else:
            stack.down()


if __name__ == "__main__":
    sys.exit(main())
