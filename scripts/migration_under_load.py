"""Migration under load: a baseline load runs while a shard move goes through copy, switch-reads and switch-writes.

    python scripts/migration_under_load.py                    # moves [0, 1000) from shard1 to shard3
    python scripts/migration_under_load.py --lo 0 --hi 1000 --to shard3 --users 16 --settle 30 --complete
    make loadtest-migration                                   # the same, defaults

What it does:

1. starts a private platform (its own embedded stack on free ports under
   ``var/migration-under-load/``: gunicorn, Celery, the generation service) and
   seeds load users on every shard, so the moving range carries live users;
2. checks the move with ``manage.py shardmove plan`` before any load;
3. runs Locust headless (the baseline journeys: pages, sign-ups, and the API
   when it is deployed) with a request log of every request;
4. after ``--settle`` seconds of quiet load, drives the move one step at a time
   with the same pause between steps: ``start --wait`` (copy until caught up),
   ``verify``, ``switch-reads``, ``switch-writes --max-freeze`` and, with
   ``--complete``, ``complete``;
5. stops the load and writes ``reports/migration-<time>/report.md``: each step's
   duration, requests, failures and latency per window (before, during and
   between steps), and every failed and the slowest requests within 5 s of the
   two cut-overs.

The promise under test (docs/data-moves.md): users see latency during the
write cut-over, never errors. Exit status 0 when no request failed within 5 s
of a cut-over and every step succeeded; 1 otherwise; 2 when the move cannot be
run here (``shardmove`` missing, bad arguments).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a file from anywhere: the project's packages come from the checkout

from locustfiles.localplatform import LocalPlatform, PlatformError, PlatformSettings  # noqa: E402
from locustfiles.timeline import Request, Step, around, markdown_table, read_request_log, windows  # noqa: E402

CUT_OVERS = ("switch-reads", "switch-writes")
MARGIN_SECONDS = 5.0


class ScenarioError(Exception):
    """The scenario cannot go on; the message says which step and where its output is."""


@dataclass
class Scenario:
    args: argparse.Namespace
    platform: LocalPlatform
    report_dir: Path
    steps: list[Step]
    move_id: str = ""

    def manage(self, *command: str, timeout: float = 600) -> tuple[bool, str]:
        done = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=REPO,
            env=self.platform.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
        with (self.report_dir / "shardmove.log").open("a") as log:
            log.write(f"$ manage.py {' '.join(command)}\n{done.stdout}\n(exit {done.returncode})\n\n")
        return done.returncode == 0, done.stdout

    def step(self, name: str, *command: str) -> None:
        say(f"[{time.strftime('%H:%M:%S')}] shardmove {name} ...")
        started = time.time()
        ok, output = self.manage("shardmove", *command)
        self.steps.append(Step(name, started, time.time(), ok))
        if not ok:
            raise ScenarioError(f"`shardmove {' '.join(command)}` failed:\n{output.strip()}")

    def find_move_id(self) -> str:
        ok, output = self.manage("shardmove", "status", "--json")
        if not ok:
            raise ScenarioError(f"`shardmove status --json` failed:\n{output.strip()}")
        lines = [line for line in output.splitlines() if line.strip().startswith(("{", "["))]
        found = []
        for line in lines:
            value = json.loads(line)
            found += value if isinstance(value, list) else [value]
        ours = [m for m in found if m.get("target") == self.args.to and m.get("lo") == self.args.lo]
        if not ours:
            raise ScenarioError(f"no move of [{self.args.lo}, {self.args.hi}) to {self.args.to} in `shardmove status`")
        return str(max(m["id"] for m in ours))


def say(message: str) -> None:
    print(message, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python scripts/migration_under_load.py",
        description="Run a baseline load while a shard move copies, switches reads and switches writes; "
        "report failed requests and latency around the cut-overs.",
    )
    parser.add_argument("--lo", type=int, default=0, help="first user ID of the range to move (default 0)")
    parser.add_argument("--hi", type=int, default=1000, help="end of the range, exclusive (default 1000)")
    parser.add_argument("--to", default="shard3", help="database alias receiving the range (default shard3)")
    parser.add_argument("--users", type=int, default=12, help="simulated users (default 12)")
    parser.add_argument("--seed-users", type=int, default=60, help="seeded load accounts (default 60)")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds of load before, between, after steps")
    parser.add_argument("--max-freeze", type=float, default=2.0, help="switch-writes --max-freeze (default 2 s)")
    parser.add_argument("--complete", action="store_true", help="also run `complete` (deletes the source rows)")
    parser.add_argument("--workdir", default=str(REPO / "var" / "migration-under-load"), help="private stack, logs")
    parser.add_argument("--reports-dir", default=str(REPO / "reports"), help="where the report folder goes")
    return parser


def shardmove_available() -> bool:
    try:
        return importlib.util.find_spec("migrations_tooling.management.commands.shardmove") is not None
    except ModuleNotFoundError:
        return False


def start_load(scenario: Scenario) -> subprocess.Popen[bytes]:
    args = scenario.args
    command = [
        sys.executable,
        "-m",
        "locustfiles.run",
        "--headless",
        "--shape",
        "baseline",
        "--host",
        scenario.platform.url,
        "--no-start",
        "--seed-users",
        str(args.seed_users),
        "--reports-dir",
        str(scenario.report_dir),
        "--",
        "--baseline-users",
        str(args.users),
        "--ramp-seconds",
        "5",
        "--run-seconds",
        "86400",  # stopped by this script once the move is through
        "--request-log",
        str(scenario.report_dir / "requests.csv"),
    ]
    log = (scenario.report_dir / "locust.log").open("ab")
    return subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def stop_load(load: subprocess.Popen[bytes]) -> None:
    if load.poll() is None:
        load.send_signal(signal.SIGTERM)  # the launcher passes it on; Locust writes its reports and quits
        try:
            load.wait(timeout=60)
        except subprocess.TimeoutExpired:
            load.kill()
            load.wait()


def run_steps(scenario: Scenario) -> None:
    args = scenario.args
    settle = args.settle
    time.sleep(settle + 5)  # ramp-up, then quiet load as the reference
    scenario.step("copy", "start", str(args.lo), str(args.hi), "--to", args.to, "--wait")
    scenario.move_id = scenario.find_move_id()
    time.sleep(settle)
    scenario.step("verify", "verify", scenario.move_id)
    time.sleep(settle)
    scenario.step("switch-reads", "switch-reads", scenario.move_id)
    time.sleep(settle)
    scenario.step("switch-writes", "switch-writes", scenario.move_id, "--max-freeze", str(args.max_freeze))
    time.sleep(settle)
    if args.complete:
        scenario.step("complete", "complete", scenario.move_id)
        time.sleep(settle)


def report(scenario: Scenario, requests: list[Request], begin: float, finish: float, problem: str) -> bool:
    args = scenario.args
    lines = [
        f"# Migration under load: [{args.lo}, {args.hi}) to {args.to}, {args.users} users",
        "",
        f"Move {scenario.move_id or '?'}; max freeze {args.max_freeze} s; {len(requests)} requests in "
        f"{finish - begin:.0f} s; shardmove output in `shardmove.log`, Locust's reports next to this file.",
        "",
        "## Steps",
        "",
        "| step | started | took s | ok |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {s.name} | {time.strftime('%H:%M:%S', time.localtime(s.started))} | {s.ended - s.started:.1f} | "
        f"{'yes' if s.ok else 'NO'} |"
        for s in scenario.steps
    ]
    lines += [
        "",
        "## What users saw",
        "",
        markdown_table(windows(requests, scenario.steps, begin=begin, finish=finish)),
    ]
    cut_over_failures = 0
    for step in (s for s in scenario.steps if s.name in CUT_OVERS):
        nearby = around(requests, step, margin=MARGIN_SECONDS)
        failed = [r for r in nearby if r.failed]
        cut_over_failures += len(failed)
        slowest = sorted(nearby, key=lambda r: r.response_ms, reverse=True)[:5]
        lines += ["", f"## {step.name}: {len(nearby)} requests within {MARGIN_SECONDS:.0f} s, {len(failed)} failed", ""]
        lines += [f"- FAILED {r.type} {r.name} after {r.response_ms:.0f} ms: {r.error}" for r in failed[:30]]
        lines += [f"- slow: {r.type} {r.name} {r.response_ms:.0f} ms" for r in slowest]
    passed = not problem and cut_over_failures == 0 and all(s.ok for s in scenario.steps)
    verdict = (
        "PASSED: no request failed around the cut-overs."
        if passed
        else "FAILED: "
        + (problem or f"{cut_over_failures} request(s) failed within {MARGIN_SECONDS:.0f} s of a cut-over.")
    )
    lines += ["", f"**{verdict}**", ""]
    (scenario.report_dir / "report.md").write_text("\n".join(lines))
    say("\n".join(lines))
    say(f"Report: {scenario.report_dir / 'report.md'}")
    return passed


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.lo < 0 or args.hi <= args.lo or args.users < 1 or args.settle < 0:
        sys.stderr.write("migration_under_load: need 0 <= --lo < --hi, --users >= 1 and --settle >= 0.\n")
        return 2
    if not shardmove_available():
        sys.stderr.write(
            "migration_under_load: `manage.py shardmove` is not available; add 'migrations_tooling' to "
            "INSTALLED_APPS and run this again.\n"
        )
        return 2
    workdir = Path(args.workdir).resolve()
    report_dir = Path(args.reports_dir).resolve() / f"migration-{time.strftime('%Y%m%d-%H%M%S')}"
    report_dir.mkdir(parents=True, exist_ok=True)
    settings = PlatformSettings(
        http_port=0,
        stack_dir=workdir / "stack",
        log_dir=workdir / "logs",
        seed_users=args.seed_users,
    )
    platform = LocalPlatform(settings, say=say)
    scenario = Scenario(args, platform, report_dir, steps=[])
    load: subprocess.Popen[bytes] | None = None
    problem = ""
    begin = finish = time.time()
    try:
        platform.start()
        ok, output = scenario.manage("shardmove", "plan", str(args.lo), str(args.hi), "--to", args.to)
        if not ok:
            raise ScenarioError(f"`shardmove plan` refuses this move:\n{output.strip()}")
        say(output.strip())
        begin = time.time()
        load = start_load(scenario)
        run_steps(scenario)
    except ScenarioError as exc:
        problem = str(exc)
        say(f"migration_under_load: {problem}")
    except PlatformError as exc:
        sys.stderr.write(f"migration_under_load: the platform did not start: {exc}\n")
        return 1
    except KeyboardInterrupt:
        problem = "interrupted"
    finally:
        finish = time.time()
        if load is not None:
            stop_load(load)
        platform.stop()
    log = report_dir / "requests.csv"
    requests = read_request_log(log) if log.exists() else []
    return 0 if report(scenario, requests, begin, finish, problem) else 1


if __name__ == "__main__":
    sys.exit(main())
