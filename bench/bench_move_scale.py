"""Cost curves of a live move: copy, verify, catch-up and freeze at growing range sizes.

Run it on a private embedded stack (fresh servers, thrown away afterwards):

    .venv/bin/python -m quantumquill.devstack exec --profile test -- \\
        .venv/bin/python bench/bench_move_scale.py --rows 300000 1000000 3000000 --freezes 8 \\
        --copy-rounds 2 --cpu-cap 0.5 --cpu-shares 65536 --json var/move-scale.json --chart docs/move-cost-curves.png

(about 8 minutes on 2 cores; without options, 300k and 1M rows uncapped, about 2 minutes).

Options: ``--rows`` total rows in the moved range at each size, smallest first
(half generations of about 0.5 kB, half their usage events; default 300000
1000000, a few minutes), ``--freezes`` cut-overs timed per size (default 6;
switch-writes and rollback alternate), ``--rate`` background writes per second
during the cut-overs (default 200), ``--burst`` generations written to the
range in one transaction for the catch-up measurement (default 20000, the same
at every size), ``--copy-rounds`` copies per size, the best kept (default 1),
``--cpu-cap`` cores each PostgreSQL server may use (cgroup v1 ``cpu``
controller; 0, the default, leaves them uncapped), ``--cpu-shares`` of the
servers' and this process's cgroups (default 8192, so that they get their
quota on a busy machine), ``--json PATH``, ``--chart PATH`` (PNG) and
``--from-json PATH`` (measure nothing; redraw ``--chart`` from an earlier
``--json``).

For each size, on the same servers, one after the other (the previous size's
move is cancelled first):

1. Seed: ``INSERT ... SELECT FROM generate_series`` on the source (shard2),
   the same rows ``bench_moves.py`` uses, then ``VACUUM ANALYZE``.
2. Copy: ``shardmove start`` until the move reaches ``catching_up`` (set-up,
   slot, subscription, the initial copy of every table); with
   ``--copy-rounds`` above 1 the move is cancelled and started again.
3. Catch-up: ``--burst`` generations written to the range on the source in one
   transaction; the time from its commit until a marker committed after it is
   visible on the target (replication applies in commit order).
4. Vacuum: ``VACUUM (ANALYZE)`` of the copied tables on the target, as an
   operator does after a large copy (otherwise autovacuum holds them for
   seconds and a cut-over's lock times out).
5. Verify: one full ``verify`` (chunked checksums on both sides), no load.
6. Freeze: with ``--rate`` writes/s going on (half of them in the moving range),
   ``switch-reads``, then ``--freezes`` cut-overs alternating ``switch-writes``
   and ``rollback``; each freeze as the engine measures it.

Then a least-squares line ``seconds = a + b * rows`` for copy and verify, the
cost per row at each size, and the freeze's p50 and max per size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_moves import (  # importing it sets Django up
    HI,
    LO,
    SOURCE,
    TABLES,
    TARGET,
    Load,
    log,
    move_copy,
    percentile,
    prepare,
)
from migrations_tooling import fence, services
from migrations_tooling.errors import FreezeExpired, LockTimedOut
from migrations_tooling.models import MoveRange, Phase
from migrations_tooling.pgconn import connect
from migrations_tooling.progress import Reporter
from quantumquill.devstack import cgroups

CGROUP_PREFIX = "qq-bench-move-scale"
BURST_ID_BASE = 10**15  # above every seeded ID, below Snowflake IDs of the load


# --- CPU caps (cgroup v1) ---------------------------------------------------------------------------------


def postmaster_pid(alias: str) -> int:
    with connect(alias) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None
    return int((Path(str(row[0])) / "postmaster.pid").read_text().split()[0])


@contextmanager
def cpu_caps(cores: float, shares: int, aliases: list[str]) -> Iterator[dict[str, Any]]:
    """Each server's processes (and their future children) in a cgroup of `cores` CPUs and `shares`; undone after.

    This process (and what it starts) goes into one more cgroup, with `shares` and no cap.
    """
    if cores <= 0:
        yield {"cpu_cap_cores": None}
        return
    reason = cgroups.unavailable_reason()
    if reason:
        raise SystemExit(f"--cpu-cap cannot be used here: {reason}.")
    groups: list[cgroups.CpuCgroup] = []
    try:
        for alias in aliases:
            groups.append(cgroups.CpuCgroup(f"{CGROUP_PREFIX}-{os.getpid()}-{alias}"))
            cgroups.place_tree(groups[-1].create(cores, shares=shares), postmaster_pid(alias))
        groups.append(cgroups.CpuCgroup(f"{CGROUP_PREFIX}-{os.getpid()}-bench"))
        groups[-1].create(None, shares=shares).add(os.getpid())
        yield {"cpu_cap_cores": cores, "cpu_shares": shares, "cgroups": [g.name for g in groups]}
    finally:
        for group in groups:
            group.remove()


# --- one size ---------------------------------------------------------------------------------------------


def seed(total_rows: int) -> float:
    started = time.monotonic()
    prepare(total_rows // 2)
    return time.monotonic() - started


def catch_up_after_burst(move: MoveRange, burst: int, offset: int) -> dict[str, float]:
    """Commit `burst` generations in the range on the source at once; time until the target has applied them."""
    with connect(move.source) as source, connect(move.target) as target:
        started = time.monotonic()
        with source.transaction():
            source.execute(
                """
                INSERT INTO content_generation (id, user_id, request_id, prompt, max_tokens, temperature, top_p,
                    seed, stop, status, output, error, finish_reason, prompt_tokens, completion_tokens, created_at,
                    updated_at, attempts, model_name, claimed_by, idempotency_key)
                SELECT %(base)s + g, %(lo)s + g %% (%(hi)s - %(lo)s), gen_random_uuid(),
                    'burst ' || md5(g::text) || repeat(' words', 30), 200, 0.8, 0.95, g, '["\\n\\n"]', 'succeeded',
                    repeat(md5((g * 7)::text), 10), '', 'stop', 40, 200, now(), now(), 1, 'bench', '', ''
                FROM generate_series(1, %(n)s) g
                """,
                {"base": BURST_ID_BASE + offset, "lo": LO, "hi": HI, "n": burst},
            )
        committed = time.monotonic()
        seq = fence.marker_bump(source, move.id)
        waited = fence.wait_for_marker(target, move.id, seq, timeout=600)
        applied = time.monotonic()
    if waited is None:
        raise SystemExit(f"The target did not apply a {burst}-row burst within 600 s.")
    return {"write_seconds": committed - started, "catch_up_seconds": applied - committed}


def vacuum_target(move: MoveRange) -> float:
    """VACUUM ANALYZE the copied tables on the target (waiting for an autovacuum already at them).

    A freshly copied range makes autovacuum process the target's tables, which takes seconds at a million
    rows; a cut-over meanwhile cannot take its lock within the lock timeout (an autovacuum yields to a
    waiting lock only after deadlock_timeout, 1 s) and gives up. Operators do the same before switch-writes.
    """
    started = time.monotonic()
    with connect(move.target) as target:
        for table in TABLES:
            target.execute(f"VACUUM (ANALYZE) {table}")
    return time.monotonic() - started


def timed_freezes(move: MoveRange, count: int, rate: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    reporter = Reporter()
    freezes: list[dict[str, Any]] = []
    aborted: list[str] = []
    with Load(rate) as load:
        services.move_switch_reads(move, reporter=reporter, back=False, max_lag=1.0, dry_run=False)
        for _ in range(count):
            move.refresh_from_db()
            if move.phase == Phase.ROLLED_BACK:
                services.move_switch_reads(move, reporter=reporter, back=False, max_lag=1.0, dry_run=False)
            action = services.move_switch_writes if move.phase == Phase.READS_SWITCHED else services.move_rollback
            time.sleep(1)
            t0 = time.monotonic()
            try:
                result = action(move, reporter=reporter, max_freeze=2.0, max_lag=1.0, dry_run=False)
            except (LockTimedOut, FreezeExpired) as exc:  # all attempts given up: recorded, not hidden
                aborted.append(f"{action.__name__}: {exc}")
                log(f"  cut-over given up: {exc}")
                continue
            t1 = time.monotonic()
            if result is None:
                raise SystemExit(f"Move {move.id}: a cut-over did not happen (phase {move.phase}).")
            freezes.append(
                {
                    "direction": result.direction,
                    "freeze_ms": 1000 * result.freeze,
                    "worst_request_ms": 1000 * load.worst_between(t0, t1),
                }
            )
            log(
                f"  cut-over {len(freezes)}: {result.direction:<13} freeze {1000 * result.freeze:6.1f} ms; "
                f"slowest request meanwhile {1000 * load.worst_between(t0, t1):6.1f} ms"
            )
        time.sleep(0.5)
    latencies = [s for _, s in load.latencies]
    requests = {
        "requests": len(latencies),
        "failed": len(load.errors),
        "p50_ms": 1000 * percentile(latencies, 50) if latencies else 0.0,
        "p99_ms": 1000 * percentile(latencies, 99) if latencies else 0.0,
        "errors": load.errors[:5],
        "cut_overs_given_up": aborted,
    }
    if not freezes:
        raise SystemExit(f"Move {move.id}: every cut-over was given up: {aborted[:2]}")
    return freezes, requests


def cancel(move: MoveRange) -> float:
    started = time.monotonic()
    move.refresh_from_db()
    if move.phase == Phase.WRITES_SWITCHED:
        services.move_rollback(move, reporter=Reporter(), max_freeze=2.0, max_lag=1.0, dry_run=False)
    services.move_cancel(move, reporter=Reporter(), dry_run=False, throttle=services.Throttle(100_000, 0))
    return time.monotonic() - started


def one_size(total_rows: int, args: argparse.Namespace, index: int) -> dict[str, Any]:
    log(f"[{total_rows:,} rows] seeding {total_rows // 2:,} generations + as many usage events on {SOURCE} ...")
    result: dict[str, Any] = {"rows": total_rows, "seed_seconds": seed(total_rows), "load_before": os.getloadavg()}
    rounds: list[float] = []
    move: MoveRange | None = None
    for _ in range(args.copy_rounds):
        if move is not None:
            cancel(move)
            vacuum_target(move)  # the cancelled copy's dead rows, not the next copy's business
        seconds, copied, move = move_copy()
        rounds.append(seconds)
        log(f"  copy:     {copied:,} rows in {seconds:.2f} s = {copied / seconds:,.0f} rows/s")
    assert move is not None
    copy_seconds = min(rounds)
    result.update(copy_seconds=copy_seconds, copy_rounds_seconds=rounds, rows_copied=copied)
    result["burst"] = {"rows": args.burst, **catch_up_after_burst(move, args.burst, index * 10**9)}
    log(
        f"  catch-up: {args.burst:,}-row burst written in {result['burst']['write_seconds']:.2f} s, "
        f"applied on {TARGET} {result['burst']['catch_up_seconds']:.2f} s after its commit"
    )
    result["target_vacuum_seconds"] = vacuum_target(move)
    log(f"  vacuum:   VACUUM (ANALYZE) of the copied tables on {TARGET} in {result['target_vacuum_seconds']:.2f} s")
    started = time.monotonic()
    run = services.move_verify(move, reporter=Reporter(), restart=False, chunk_rows=None)
    result.update(verify_seconds=time.monotonic() - started, rows_verified=run.rows_checked)
    if run.outcome != "passed":
        raise SystemExit(f"Move {move.id}: verify {run.outcome}: {run.mismatches[:3]}")
    log(
        f"  verify:   {run.rows_checked:,} rows in {result['verify_seconds']:.2f} s = "
        f"{run.rows_checked / result['verify_seconds']:,.0f} rows/s"
    )
    freezes, requests = timed_freezes(move, args.freezes, args.rate)
    ms = [f["freeze_ms"] for f in freezes]
    result.update(
        freezes=freezes,
        freeze_p50_ms=statistics.median(ms),
        freeze_max_ms=max(ms),
        requests=requests,
        load_after=os.getloadavg(),
    )
    log(
        f"  freeze:   p50 {result['freeze_p50_ms']:.1f} ms, max {result['freeze_max_ms']:.1f} ms over {len(ms)}; "
        f"{requests['requests']:,} requests, {requests['failed']} failed; "
        f"{len(requests['cut_overs_given_up'])} cut-over(s) given up"
    )
    result["cancel_seconds"] = cancel(move)
    return result


# --- fits and chart ---------------------------------------------------------------------------------------


def linear_fit(xs: list[float], ys: list[float]) -> dict[str, float]:
    """Least squares y = a + b x, with R² (1.0 for two points)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    a = my - b * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - (a + b * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    return {"intercept_s": a, "us_per_row": 1e6 * b, "r2": 1 - ss_res / ss_tot if ss_tot else 1.0}


def summarise(sizes: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for key in ("copy", "verify"):
        # Verify also reads the catch-up burst (the same few rows at every size): its own row count.
        rows = [float(s["rows_copied" if key == "copy" else "rows_verified"]) for s in sizes]
        seconds = [float(s[f"{key}_seconds"]) for s in sizes]
        per_row = [1e6 * t / r for t, r in zip(seconds, rows, strict=True)]
        summary[key] = {
            "fit": linear_fit(rows, seconds) if len(rows) > 1 else None,
            "us_per_row": per_row,
            "per_row_ratio_largest_to_smallest": per_row[-1] / per_row[0],
        }
    p50 = [float(s["freeze_p50_ms"]) for s in sizes]
    catch = [float(s["burst"]["catch_up_seconds"]) for s in sizes]
    summary["freeze_p50_ratio_largest_to_smallest"] = p50[-1] / p50[0]
    summary["catch_up_ratio_largest_to_smallest"] = catch[-1] / catch[0]
    summary["rows_ratio_largest_to_smallest"] = sizes[-1]["rows"] / sizes[0]["rows"]
    return summary


def draw(sizes: list[dict[str, Any]], summary: dict[str, Any], path: str, title: str, rate: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s["rows"] / 1e6 for s in sizes]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, colour, label in (("copy", "tab:blue", "copy (start to catching_up)"), ("verify", "tab:orange", "verify")):
        seconds = [s[f"{key}_seconds"] for s in sizes]
        counted = [s["rows_copied" if key == "copy" else "rows_verified"] / 1e6 for s in sizes]
        left.plot(counted, seconds, "o", color=colour, label=label)
        fit = summary[key]["fit"]
        if fit:
            xs = [0.0, max(counted)]
            left.plot(
                xs,
                [fit["intercept_s"] + fit["us_per_row"] * x for x in xs],
                "-",
                color=colour,
                alpha=0.6,
                label=f"fit: {fit['intercept_s']:.1f} s + {fit['us_per_row']:.1f} µs/row (R² {fit['r2']:.3f})",
            )
    left.set_xlabel("rows in the moved range (millions)")
    left.set_ylabel("seconds")
    left.set_title("Copy and verify time by range size")
    left.set_xlim(left=0)
    left.set_ylim(bottom=0)
    left.legend(fontsize=8)
    left.grid(alpha=0.3)

    p50 = [s["freeze_p50_ms"] for s in sizes]
    worst = [s["freeze_max_ms"] for s in sizes]
    right.plot(rows, p50, "o-", color="tab:green", label="freeze p50")
    right.plot(rows, worst, "v--", color="tab:red", label="freeze max")
    catch = [1000 * s["burst"]["catch_up_seconds"] for s in sizes]
    right.plot(rows, catch, "s:", color="tab:purple", label=f"catch-up after a {sizes[0]['burst']['rows']:,}-row burst")
    right.set_xlabel("rows in the moved range (millions)")
    right.set_ylabel("milliseconds")
    right.set_title(f"Freeze under {rate:.0f} writes/s, and catch-up, by range size")
    right.set_xlim(left=0)
    right.set_ylim(bottom=0)
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def chart(results: dict[str, Any], path: str) -> None:
    sizes, args = results["sizes"], results["args"]
    cap = f", each PostgreSQL server capped at {args['cpu_cap']:g} CPU" if args["cpu_cap"] else ""
    loads = [s["load_before"][0] for s in sizes] + [s["load_after"][0] for s in sizes]
    title = (
        f"bench/bench_move_scale.py: {os.cpu_count()} cores{cap}; 1-min load average {min(loads):.1f}-{max(loads):.1f}"
    )
    draw(sizes, results["summary"], path, title, float(args["rate"]))
    log(f"chart: {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--rows", type=int, nargs="+", default=[300_000, 1_000_000], help="total rows in the range at each size"
    )
    parser.add_argument("--freezes", type=int, default=6, help="cut-overs timed per size")
    parser.add_argument("--rate", type=float, default=200, help="background writes per second during the cut-overs")
    parser.add_argument("--burst", type=int, default=20_000, help="generations in the catch-up burst")
    parser.add_argument("--cpu-cap", type=float, default=0.0, help="cores per PostgreSQL server (0: uncapped)")
    parser.add_argument(
        "--cpu-shares", type=int, default=8192, help="cpu.shares of the servers' and this process's cgroups"
    )
    parser.add_argument("--copy-rounds", type=int, default=1, help="copies per size (cancelled between); best kept")
    parser.add_argument("--json", default="", help="also write the figures to this file")
    parser.add_argument("--chart", default="", help="draw the curves into this PNG file")
    parser.add_argument(
        "--from-json", default="", help="measure nothing: redraw --chart from a file an earlier --json wrote"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        if not args.chart:
            parser.error("--from-json redraws a chart: give --chart PATH too")
        chart(json.loads(Path(args.from_json).read_text()), args.chart)
        return 0
    if any(r < 2 for r in args.rows) or args.rows != sorted(args.rows):
        parser.error("--rows takes sizes of at least 2 rows, smallest first, e.g. --rows 300000 1000000 3000000")
    if args.freezes < 1 or args.burst < 1 or args.copy_rounds < 1 or args.rate <= 0:
        parser.error("--freezes, --burst and --copy-rounds must be at least 1 and --rate above 0")
    if not 2 <= args.cpu_shares <= 262144:
        parser.error("--cpu-shares takes 2 to 262144 (cgroup v1 cpu.shares)")

    results: dict[str, Any] = {"load_start": os.getloadavg(), "args": vars(args)}
    prepare(0)  # migrate and map the shards before the servers are capped
    with cpu_caps(args.cpu_cap, args.cpu_shares, ["default", SOURCE, TARGET]) as caps:
        results["cpu"] = caps
        sizes = [one_size(total, args, n) for n, total in enumerate(args.rows)]
    results["sizes"] = sizes
    results["load_end"] = os.getloadavg()
    results["summary"] = summarise(sizes)
    log(json.dumps(results["summary"], indent=2))
    log(f"load averages: start {results['load_start']}, end {results['load_end']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    if args.chart:
        chart(results, args.chart)
    failed = sum(s["requests"]["failed"] + len(s["requests"]["cut_overs_given_up"]) for s in sizes)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
