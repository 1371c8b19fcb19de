"""Run a command (and everything it starts) in its own cgroup v1 cpu group with a high ``cpu.shares``.

On a machine shared with other work, a benchmark's servers and load generator otherwise get a fair share of
the CPU with every other process, and the figures swing with whatever else runs. A group with ``cpu.shares``
8192 (eight times the default) gets the CPU first when it wants it, so same-run ratios are less noisy:

    python bench/cpu_shares.py [--shares 8192] -- python -m quantumquill.devstack exec --profile test -- ...

Needs root and the cgroup v1 cpu controller at /sys/fs/cgroup/cpu. The group is removed afterwards (the
command's processes have exited by then). Without the controller the command runs as is, with a warning.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

CPU = Path("/sys/fs/cgroup/cpu")


def run(command: list[str], *, shares: int) -> int:
    group = CPU / f"qq-bench-cpu-shares-{os.getpid()}"
    try:
        group.mkdir()
        (group / "cpu.shares").write_text(str(shares))
    except OSError as exc:
        print(f"cpu_shares: no cgroup ({exc}); running without one", file=sys.stderr)
        return subprocess.call(command)
    try:
        (group / "cgroup.procs").write_text(str(os.getpid()))  # children inherit the group
        return subprocess.call(command)
    finally:
        (CPU / "cgroup.procs").write_text(str(os.getpid()))
        deadline = time.monotonic() + 30
        while (group / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.2)  # servers still stopping
        try:
            group.rmdir()
        except OSError as exc:
            print(f"cpu_shares: {group} left behind ({exc}); rmdir it once its processes exit", file=sys.stderr)


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
