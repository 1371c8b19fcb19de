"""Where a test run's CPU goes: the run in a cgroup of its own, its processes sampled by kind.

Wall time lies on a shared machine (a test waits for a core as long as a neighbour holds it); CPU seconds do
not. This runs a command in its own cgroup v1 cpuacct group (``quantumquill.devstack.cgroups``), reads the
group's CPU seconds at the end, and every ``--interval`` seconds reads ``/proc/<pid>/stat`` of every process
in the group to charge its CPU to a kind (pytest worker, postgres backend, Celery, gunicorn, ...):

    python -m tests.support.cpu_profile [--interval 0.5] [--format json] -- \\
        python -m quantumquill.devstack exec --profile test -- python -m pytest tests/generation -n 2 --dist loadfile

A process's CPU between its last sample and its exit is missed, so the kinds add up to a little less than
the group's total ("not sampled" is the difference: short-lived processes, mostly). Needs root and cgroup v1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from quantumquill.devstack.cgroups import CpuCgroup

TICKS = os.sysconf("SC_CLK_TCK")
# First match wins: (kind, pattern searched in the command line, or the process name for servers that rename
# themselves). Order matters: a Celery worker is Python, a pytest worker too.
KINDS: tuple[tuple[str, str], ...] = (
    ("initdb/pg_ctl", r"/(initdb|pg_ctl|pg_basebackup)\b|/postgres --(single|boot)"),
    ("postgres", r"/postgres\b|^postgres:"),
    ("redis", r"redis-server"),
    ("celery", r"\bcelery\b"),
    ("gunicorn", r"gunicorn"),
    ("contentgen/grpc", r"contentgen_service"),
    ("locust", r"\blocust"),
    ("chromium", r"chrom(e|ium)|headless_shell"),
    ("nginx", r"\bnginx\b"),
    ("pgbouncer", r"pgbouncer"),
    ("prometheus", r"prometheus"),
    ("manage.py", r"manage\.py|django-admin"),
    ("pytest worker", r"-c import sys;exec\(eval\(sys\.stdin|execnet|xdist"),
    ("pytest", r"\bpytest\b"),
    ("devstack", r"quantumquill\.devstack"),
    ("python (other)", r"python"),
)


def kind_of(cmdline: str) -> str:
    for kind, pattern in KINDS:
        if re.search(pattern, cmdline):
            return kind
    return "other"


def _sample(pids: list[int], seen: dict[int, tuple[str, float]]) -> None:
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited since the group listed it
        fields = stat.rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime, this process only
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        previous = seen.get(pid)
        seen[pid] = (previous[0] if previous else kind_of(cmdline.strip() or name), cpu)


def profile(command: list[str], *, interval: float) -> dict[str, object]:
    group = CpuCgroup(f"qq-cpu-profile-{os.getpid()}").create(None, shares=1024)
    seen: dict[int, tuple[str, float]] = {}
    done = threading.Event()

    def sampler() -> None:
        while not done.wait(interval):
            _sample(group.pids(), seen)

    started = time.monotonic()
    try:
        process = subprocess.Popen(command, preexec_fn=lambda: group.add(os.getpid()))
        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        status = process.wait()
        done.set()
        thread.join()
        wall = time.monotonic() - started
        total = group.usage_seconds()
    finally:
        group.remove()
    by_kind: dict[str, dict[str, float]] = {}
    for kind, cpu in seen.values():
        entry = by_kind.setdefault(kind, {"cpu_seconds": 0.0, "processes": 0})
        entry["cpu_seconds"] += cpu
        entry["processes"] += 1
    sampled = sum(entry["cpu_seconds"] for entry in by_kind.values())
    return {
        "exit_status": status,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(total, 1),
        "cpu_per_wall": round(total / wall, 2) if wall else 0.0,
        "not_sampled_seconds": round(total - sampled, 1),
        "kinds": {
            kind: {"cpu_seconds": round(entry["cpu_seconds"], 1), "processes": int(entry["processes"])}
            for kind, entry in sorted(by_kind.items(), key=lambda item: -item[1]["cpu_seconds"])
        },
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between samples of /proc (0.5)")
    parser.add_argument("--format", choices=["text", "json"], default="text", help="report format (text)")
    parser.add_argument("command", nargs="+", help="the command to run and measure (after --)")
    args = parser.parse_args(argv)
    report = profile(args.command, interval=args.interval)
    if args.format == "json":
        print(json.dumps(report, indent=2))
    else:
        print(
            f"\ncpu_profile: {report['cpu_seconds']} CPU s in {report['wall_seconds']} s wall "
            f"({report['cpu_per_wall']} cores busy on average), exit {report['exit_status']}",
            file=sys.stderr,
        )
        for kind, entry in report["kinds"].items():  # type: ignore[attr-defined]
            print(f"  {entry['cpu_seconds']:8.1f} s  {entry['processes']:5d} processes  {kind}", file=sys.stderr)
        print(f"  {report['not_sampled_seconds']:8.1f} s  not sampled (exited between samples)", file=sys.stderr)
    return int(report["exit_status"])  # type: ignore[call-overload]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
