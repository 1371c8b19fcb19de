"""The end of a run: judge it against thresholds.toml, set Locust's exit code, write the summary.

Also adds three tabs to the web UI ("Service level", "Shape phases",
"Memory"), refreshed with the statistics, so QA sees the verdict while the
test runs rather than after it.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .options import LoadOptions
from .shapes import PhasedShape, SoakShape
from .thresholds import Check, Thresholds, Verdict, evaluate, load_thresholds
from .windows import endpoint_stats

if TYPE_CHECKING:
    from locust.env import Environment

logger = logging.getLogger(__name__)

UI_TABS = [
    {"title": "Service level", "key": "qq-service-level"},
    {"title": "Shape phases", "key": "qq-phases"},
    {"title": "Memory", "key": "qq-memory"},
]
UI_TABLES = [
    {
        "key": "qq-service-level",
        "structure": [
            {"key": "subject", "title": "Group"},
            {"key": "measured", "title": "Measured"},
            {"key": "limit", "title": "Limit"},
            {"key": "verdict", "title": "Verdict"},
            {"key": "note", "title": "Note"},
        ],
    },
    {
        "key": "qq-phases",
        "structure": [
            {"key": "name", "title": "Phase"},
            {"key": "users", "title": "Users"},
            {"key": "seconds", "title": "Seconds"},
            {"key": "rps", "title": "Req/s"},
            {"key": "p50_ms", "title": "p50 ms"},
            {"key": "p95_ms", "title": "p95 ms"},
            {"key": "failure_ratio", "title": "Failure ratio"},
            {"key": "verdict", "title": "Verdict"},
            {"key": "problems", "title": "Over target"},
        ],
    },
    {
        "key": "qq-memory",
        "structure": [
            {"key": "elapsed_s", "title": "Elapsed s"},
            {"key": "workers", "title": "Workers"},
            {"key": "workers_rss_mb", "title": "Workers RSS MiB"},
            {"key": "master_rss_mb", "title": "Master RSS MiB"},
        ],
    },
]


def _verdict_word(check: Check) -> str:
    return {True: "ok", False: "FAIL", None: "-"}[check.passed]


def run_verdict(environment: Environment, thresholds: Thresholds, *, mode: str = "run") -> Verdict:
    exceptions = len(environment.runner.exceptions) if environment.runner else 0
    verdict = evaluate(endpoint_stats(environment.stats), thresholds, exceptions=exceptions, mode=mode)
    shape = environment.shape_class
    if isinstance(shape, SoakShape) and thresholds.soak_max_rss_growth_mb_per_hour is not None:
        trend = shape.summary().get("memory_trend")
        if trend:
            slope = trend["late_slope_mb_per_hour"]
            limit = thresholds.soak_max_rss_growth_mb_per_hour
            check = Check(
                "worker memory",
                f"{slope:+.1f} MiB/h (last half)",
                f"<= {limit:.0f} MiB/h",
                slope <= limit,
                trend["reading"],
            )
            verdict = Verdict((*verdict.checks, check), verdict.totals)
    return verdict


def _shape_summary(environment: Environment) -> dict[str, Any] | None:
    shape = environment.shape_class
    return shape.summary() if isinstance(shape, PhasedShape) else None


def render_markdown(verdict: Verdict, shape: dict[str, Any] | None, *, host: str, gate: bool) -> str:
    lines = [f"# Load test against {host}", ""]
    outcome = "PASSED" if verdict.passed else "FAILED"
    lines.append(f"Thresholds: **{outcome}**" + ("" if gate else " (informational: this shape is meant to break)"))
    lines += ["", "| group | measured | limit | verdict | note |", "|---|---|---|---|---|"]
    lines += [f"| {c.subject} | {c.measured} | {c.limit} | {_verdict_word(c)} | {c.note} |" for c in verdict.checks]
    if shape:
        lines += ["", f"## {shape['shape']}", ""]
        if shape.get("phases"):
            lines += ["| phase | users | s | req/s | p50 ms | p95 ms | failures | verdict | over target |"]
            lines += ["|---|---|---|---|---|---|---|---|---|"]
            for p in shape["phases"]:
                lines.append(
                    f"| {p['name']} | {p['users']} | {p['seconds']} | {p['rps']} | {p['p50_ms']:.0f} | "
                    f"{p['p95_ms']:.0f} | {p['failure_ratio']:.2%} | {p['verdict']} | {p['problems']} |"
                )
        if shape.get("stopped_because"):
            lines += ["", f"Stopped because: {shape['stopped_because']}"]
        if shape.get("broke_at"):
            b = shape["broke_at"]
            lines.append(f"Break point: {b['name']} at {b['users']} users ({b['rps']} req/s): {b['problems']}")
            if shape.get("last_good"):
                g = shape["last_good"]
                lines.append(f"Last step within target: {g['name']}, {g['users']} users, {g['rps']} req/s.")
        trend = shape.get("memory_trend")
        if trend:
            lines.append(
                f"Worker memory: {trend['first_mb']} -> {trend['last_mb']} MiB (peak {trend['peak_mb']}) over "
                f"{trend['samples']} samples; after warm-up (first {trend['warmup_samples']} samples left out) "
                f"{trend['slope_mb_per_hour']:+} MiB/h, over the last half {trend['late_slope_mb_per_hour']:+} MiB/h: "
                f"{trend['reading']}."
            )
        elif "memory_sampled" in shape and not shape["memory_sampled"]:
            lines.append("Worker memory: not sampled (no gunicorn process of this platform on this machine).")
    return "\n".join(lines) + "\n"


def write_reports(report_dir: Path, verdict: Verdict, shape: dict[str, Any] | None, markdown: str) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "passed": verdict.passed,
        "totals": verdict.totals,
        "checks": [c.__dict__ | {"verdict": _verdict_word(c)} for c in verdict.checks],
        "shape": shape,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (report_dir / "summary.json").write_text(json.dumps(payload, indent=2, default=str))
    (report_dir / "summary.md").write_text(markdown)
    for key, filename in (("phases", "phases.csv"), ("memory_samples", "memory.csv")):
        rows = (shape or {}).get(key) or []
        if rows:
            with (report_dir / filename).open("w", newline="") as out:
                writer = csv.DictWriter(out, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)


def on_quitting(environment: Environment, **_kwargs: Any) -> None:
    """Judge the run; exit code 0 when it meets the thresholds (or the shape is not gated), 1 when not."""
    from locust.runners import WorkerRunner

    if isinstance(environment.runner, WorkerRunner):
        return  # the master judges the whole run from every worker's statistics; a worker's share is not a verdict
    options = LoadOptions.from_parsed(environment.parsed_options)
    shape = environment.shape_class
    if isinstance(shape, PhasedShape):
        shape.finish()
    verdict = run_verdict(environment, load_thresholds(options.thresholds))
    summary = _shape_summary(environment)
    gate = not isinstance(shape, PhasedShape) or shape.gate_applies
    markdown = render_markdown(verdict, summary, host=environment.host or "?", gate=gate)
    for line in markdown.splitlines():
        if line.strip():
            logger.info(line)
    if options.report_dir:
        write_reports(Path(options.report_dir), verdict, summary, markdown)
        logger.info("Summary written to %s", Path(options.report_dir) / "summary.md")
    script_errors = [c for c in verdict.failed_checks if c.subject == "errors in the load scripts"]
    failed = not verdict.passed if gate else bool(script_errors)
    environment.process_exit_code = 1 if failed else 0
    if failed:
        logger.error(
            "Load test FAILED its thresholds (%s): %d check(s) over target.",
            options.thresholds,
            len(verdict.failed_checks),
        )


def extend_web_ui(environment: Environment) -> None:
    """Add our tabs; their rows ride along with the stats the UI polls every two seconds."""
    web_ui = environment.web_ui
    if web_ui is None or web_ui.app is None:
        return
    from flask import request  # Locust's web UI is Flask; only needed when it runs

    web_ui.template_args["extended_tabs"] = UI_TABS
    web_ui.template_args["extended_tables"] = UI_TABLES

    @web_ui.app.after_request
    def add_our_rows(response: Any) -> Any:
        if request.path != "/stats/requests" or response.status_code != 200:
            return response
        options = LoadOptions.from_parsed(environment.parsed_options)
        try:
            finished = environment.runner is not None and environment.runner.state == "stopped"
            verdict = run_verdict(environment, load_thresholds(options.thresholds), mode="run" if finished else "live")
            checks = [c.__dict__ | {"verdict": _verdict_word(c)} for c in verdict.checks]
        except ValueError as exc:
            checks = [{"subject": "thresholds", "measured": "-", "limit": "-", "verdict": "error", "note": str(exc)}]
        summary = _shape_summary(environment) or {}
        extended = [
            {"key": "qq-service-level", "data": checks},
            {"key": "qq-phases", "data": summary.get("phases", [])},
            {"key": "qq-memory", "data": summary.get("memory_samples", [])},
        ]
        response.set_data(json.dumps({**response.json, "extended_stats": extended}))
        return response
