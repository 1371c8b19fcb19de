"""Run a command (and everything it starts) in its own cgroup v1 cpu group with a high ``cpu.shares``.

On a machine shared with other work, a benchmark's servers and load generator otherwise get a fair share of
the CPU with every other process, and the figures swing with whatever else runs. A group with ``cpu.shares``
8192 (eight times the default) gets the CPU first when it wants it, so same-run ratios are less noisy:

    python bench/cpu_shares.py [--shares 8192] -- python -m quantumquill.devstack exec --profile test -- ...

Needs root and the cgroup v1 cpu controller at /sys/fs/cgroup/cpu (``quantumquill.devstack.cgroups``). The group
is removed afterwards (any process of the command still stopping goes back to the root group). Without the
controller the command runs as is, with a warning.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

# The cgroup module without the project package: importing ``quantumquill`` loads Celery and Django (and sets
# DJANGO_SETTINGS_MODULE for the command), while this wrapper runs under any Python 3 and passes the environment
# on as given. ``quantumquill.devstack`` and its ``preflight`` import only the standard library.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "quantumquill"))
from devstack.cgroups import CgroupsUnavailable, CpuCgroup


def run(command: list[str], *, shares: int) -> int:
    group = CpuCgroup(f"qq-bench-cpu-shares-{os.getpid()}")
    try:
        group.create(None, shares=shares)
    except (OSError, CgroupsUnavailable) as exc:
        group.remove()  # half made (a cpu.shares the kernel refused), if at all
        print(f"cpu_shares: no cgroup ({exc}); running without one", file=sys.stderr)
        return subprocess.call(command)
    try:
        group.add(os.getpid())  # children inherit the group
        return subprocess.call(command)
    finally:
        try:
            group.remove(timeout=30)
        except OSError as exc:
            print(
                f"cpu_shares: {group.folders[0]} left behind ({exc}); rmdir it once its processes exit", file=sys.stderr
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shares", type=int, default=8192)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    sys.exit(run(command, shares=args.shares))


if __name__ == "__main__":
    main()
