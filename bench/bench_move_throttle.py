"""Benchmark of the throttled copy: signed-in reads on the source before, during a full-speed and a throttled copy.

Run it on a private embedded stack, as root (it caps the servers with the cgroup v1 ``cpu`` controller):

    .venv/bin/python -m quantumquill.devstack exec --profile test -- .venv/bin/python bench/bench_move_throttle.py

Each PostgreSQL server of the stack (its postmaster and every backend) goes into its own cgroup under
``/sys/fs/cgroup/cpu/qq-bench-throttle-*`` with the same quota (``--cpu``, default 0.5 CPU) and
``cpu.shares = 8192``, and this process into one with the same shares and no quota, so each gets its share on a
busy machine; the cgroups are removed at the end. The moved range ``[1000, 100000)`` (``--rows`` generations,
each with a usage event) goes from shard2 to shard1; meanwhile ``--readers`` threads read the last 20 generations
of users outside the range on shard2 (a signed-in page), ``--rate`` reads per second in all, timed one by one.

Phases, interleaved so that every throttled copy is compared with idle phases measured next to it (a single
*before* phase is noisier than the 20% it checks: on this machine an idle source read 0.5x-1.5x its *before* p95
later in the same run). ``--rounds`` times: reads alone for ``--seconds`` (idle), reads during ``shardmove start
--wait --no-throttle`` (the copy at full speed; then ``cancel``), reads alone again (idle: *before* the throttled
copy), reads during ``shardmove start --wait`` with the default throttle (the budget derived from the source's
probe p95 before the copy; then ``cancel``); and one last idle phase, so the last throttled copy has idle phases
on both sides too. The cancels run uncapped and unmeasured. Reported, per round: the throttled copy's read p95
against the idle phase just before it (*throttled / before*) and against the idle phases on both sides pooled;
over the run: the p95 of all idle reads pooled, of all full-speed reads and of all throttled reads, and each
copy's duration (the move's own ``copy_started_at`` to ``copy_finished_at``, as recorded by the follower,
which polls once a second).

After each throttled copy (``--held``, the default), a move whose gate this process holds shut throughout, so
its copy does no work: reads for ``--seconds`` with no command following it (*held shut*: what the open ``COPY``
transactions and the walsenders cost the source), then for ``--seconds`` with ``shardmove refresh --watch``
steering it (*held shut, followed*: the controller's probe and the follower's progress polling on top); then it
is cancelled, unmeasured.

The commands run as child processes, as an operator runs them, in a cgroup of their own (``--follower-cpu``,
default 0.5 CPU, ``--follower-shares``, default as high as the others'): in production the follower runs on an
operator host, not on the app servers or the database server, so its CPU is capped and counted apart from the
readers'. On this machine it still shares the cores with them. The CPU each cgroup used (the source's server,
the target's, the readers, the follower) is sampled with the gate (every ``--gate-every`` seconds) and reported
per kind of phase (the median over the run's phases of that kind). ``--json PATH`` writes the figures;
``--chart PATH`` draws the reads' p95 per second over the run, with the phases as bands, and the share of each
second the copy's gate stood open (sampled on the target).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._django import machine, median, percentile, setup_django

setup_django()

import psycopg  # noqa: E402

from migrations_tooling import services  # noqa: E402
from migrations_tooling.models import MoveRange, Phase  # noqa: E402
from migrations_tooling.pgconn import connect  # noqa: E402
from migrations_tooling.progress import Reporter  # noqa: E402
from quantumquill.devstack import cgroups  # noqa: E402
from shardrouter.control import conninfo_for  # noqa: E402
from shardrouter.keyspace import KEYSPACE_END, ShardRange  # noqa: E402
from shardrouter.mapstore import apply_map, load_map_from_database  # noqa: E402

LO, HI = 1000, 100_000
SOURCE, TARGET = "shard2", "shard1"
READERS_LO = 200_000  # readers' users, outside the moved range, on the source


def log(message: str) -> None:
    print(message, flush=True)


# --- cgroups -------------------------------------------------------------------------------------------------


def _postmaster(alias: str) -> int:
    with psycopg.connect(conninfo_for(alias), autocommit=True) as conn:
        data_dir = conn.execute("SHOW data_directory").fetchone()[0]  # type: ignore[index]
    return int((Path(data_dir) / "postmaster.pid").read_text().split()[0])


capped_groups: list[cgroups.CpuCgroup] = []
roles: dict[str, cgroups.CpuCgroup] = {}  # "source", "target", "readers", "follower": for CPU per phase


def set_quota(cpu: float | None) -> None:
    """Change the servers' quota (None: uncapped), e.g. to clean up between phases quickly."""
    for group in capped_groups:
        group.set_cap(cpu)


@contextlib.contextmanager
def capped(aliases: list[str], cpu: float, follower_cpu: float, follower_shares: int) -> Iterator[list[str]]:
    """Each distinct server of ``aliases`` in its own cgroup capped at ``cpu`` CPUs; this process (the readers)
    in another; the ``shardmove`` commands in a third, capped at ``follower_cpu`` with ``follower_shares``."""
    made: list[cgroups.CpuCgroup] = []
    notes = []

    def group(name: str, quota: float | None, shares: int = cgroups.HIGH_SHARES) -> cgroups.CpuCgroup:
        made.append(cgroups.CpuCgroup(f"qq-bench-throttle-{os.getpid()}-{name}").create(quota, shares=shares))
        return made[-1]

    try:
        servers: dict[int, str] = {}
        for alias in aliases:
            servers.setdefault(_postmaster(alias), alias)
        for pid, alias in servers.items():
            server = group(f"pg-{alias}", cpu)
            cgroups.place_tree(server, pid)  # backends forked later inherit the group
            capped_groups.append(server)
            roles["source" if alias == SOURCE else "target"] = server
            notes.append(f"server of {alias} (postmaster {pid}) capped at {cpu} CPU, cpu.shares {cgroups.HIGH_SHARES}")
        roles["readers"] = group("loadgen", None)
        roles["readers"].add(os.getpid())
        notes.append(f"load generator (readers): cpu.shares {cgroups.HIGH_SHARES}, no quota")
        roles["follower"] = group("follower", follower_cpu, follower_shares)
        notes.append(
            f"shardmove commands (the follower): capped at {follower_cpu} CPU, cpu.shares {follower_shares} (an "
            "operator host of their own: their CPU is counted apart and capped)"
        )
        yield notes
    finally:
        capped_groups.clear()
        roles.clear()
        for made_group in reversed(made):
            made_group.remove()  # whatever is left (this process, late backends) goes back to the root group


def command(*args: str) -> subprocess.Popen[str]:
    """``manage.py shardmove ...`` as an operator runs it: its own process, in the follower's cgroup."""
    follower = roles.get("follower")

    def join() -> None:
        if follower is not None:
            for procs in follower.procs_files:
                procs.write_text(str(os.getpid()))

    return subprocess.Popen(
        [sys.executable, "manage.py", "shardmove", *args],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=join,
    )


# --- data and reads ------------------------------------------------------------------------------------------


def prepare(rows: int, readers: int) -> None:
    base = load_map_from_database()
    apply_map(
        [ShardRange(0, 1000, "shard1"), ShardRange(1000, KEYSPACE_END, "shard2")],
        expected_version=base.version,
        reason="bench: two shards",
    )
    with connect(SOURCE) as conn:
        conn.execute("TRUNCATE content_generation, content_usageevent")
        for lo, hi, count in ((LO, HI, rows), (READERS_LO, READERS_LO + readers, readers * 50)):
            conn.execute(
                """
                INSERT INTO content_generation (id, user_id, request_id, prompt, max_tokens, temperature, top_p, seed,
                    stop, status, output, error, finish_reason, prompt_tokens, completion_tokens, created_at,
                    updated_at, attempts, model_name, claimed_by, idempotency_key)
                SELECT %(base)s + g, %(lo)s + g %% (%(hi)s - %(lo)s), gen_random_uuid(),
                    'prompt ' || md5(g::text) || repeat(' words', 30), 200, 0.8, 0.95, g, '["\\n\\n"]', 'succeeded',
                    repeat(md5((g * 7)::text), 10), '', 'stop', 40, 200, now() - make_interval(secs => g), now(), 1,
                    'bench', '', ''
                FROM generate_series(1, %(count)s) g
                """,
                {"lo": lo, "hi": hi, "count": count, "base": lo * 10_000_000},
            )
        conn.execute(
            """
            INSERT INTO content_usageevent (id, user_id, kind, generation_id, tokens, created_at)
            SELECT id + 1, user_id, 'generation_requested', id, 240, created_at FROM content_generation
            """
        )
        conn.execute("VACUUM ANALYZE content_generation")
        conn.execute("VACUUM ANALYZE content_usageevent")
    with connect(TARGET) as conn:
        conn.execute("TRUNCATE content_generation, content_usageevent")


class Reads:
    """``readers`` threads reading a signed-in user's last 20 generations on the source at ``rate`` reads/s."""

    QUERY = (
        "SELECT id, prompt, status, output, created_at FROM content_generation WHERE user_id = %s "
        "ORDER BY created_at DESC LIMIT 20"
    )

    def __init__(self, readers: int, users: int, rate: float) -> None:
        self.users = users
        self.interval = readers / rate
        self.samples: list[tuple[float, float]] = []  # (wall-clock time, ms)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(readers)]

    def __enter__(self) -> Reads:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        with psycopg.connect(conninfo_for(SOURCE), autocommit=True) as conn:
            next_at = time.monotonic() + random.random() * self.interval
            while not self.stop.is_set():
                user = READERS_LO + random.randrange(self.users)
                at, started = time.time(), time.perf_counter()
                conn.execute(self.QUERY, [user], prepare=True).fetchall()
                self.samples.append((at, (time.perf_counter() - started) * 1000))
                next_at += self.interval
                self.stop.wait(max(0.0, next_at - time.monotonic()))

    def p95(self, since: float, until: float) -> tuple[float, int]:
        window = [ms for at, ms in self.samples if since <= at < until]
        return (percentile(window, 95) if window else float("nan")), len(window)


class GateWatch:
    """Samples, every ``every`` seconds, whether a move's gate on the target stands shut (wall-clock time), and
    the CPU time each role's cgroup has used (the source and target servers, the readers, the follower).

    One small query of the target's ``pg_locks`` per sample, nothing on the source or the control database.
    """

    def __init__(self, every: float) -> None:
        self.every = every
        self.samples: list[tuple[float, bool]] = []
        self.cpu: list[tuple[float, dict[str, float]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> GateWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)

    def _run(self) -> None:
        from migrations_tooling.throttle import gate_key

        with psycopg.connect(conninfo_for(TARGET), autocommit=True) as conn:
            while not self.stop.wait(self.every):
                self.cpu.append((time.time(), {role: group.usage_seconds() for role, group in roles.items()}))
                row = conn.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock' "
                    "AND ((classid::bigint << 32) | objid::bigint) BETWEEN %s AND %s",
                    [gate_key(0), gate_key(1 << 32)],  # every move's gate (controllers' keys lie far above)
                ).fetchone()
                self.samples.append((time.time(), bool(row and row[0])))

    def cpu_between(self, since: float, until: float) -> dict[str, float]:
        """CPUs each role used on average between ``since`` and ``until`` (the samples inside the span)."""
        inside = [(at, used) for at, used in self.cpu if since <= at <= until]
        if len(inside) < 2:
            return {}
        (t0, first), (t1, last) = inside[0], inside[-1]
        return {role: round((last[role] - first[role]) / (t1 - t0), 3) for role in first if role in last}

    def open_share(self, since: float, until: float) -> float:
        window = [shut for at, shut in self.samples if since <= at < until]
        return 1.0 - sum(window) / len(window) if window else float("nan")


def chart(path: Path, reads: Reads, gate: GateWatch, phases: list[tuple[str, float, float]], idle: float) -> None:
    """Reads' p95 per second with the phases as bands; the gate's open share per second below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = phases[0][1]
    end = phases[-1][2]
    seconds = range(int(end - start) + 1)
    p95s = [reads.p95(start + s, start + s + 1)[0] for s in seconds]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=[3, 1])
    colours = {
        "idle": "#dddddd",
        "full speed": "#f4b6b6",
        "throttled": "#b6d7f4",
        "held shut": "#d9f4b6",
        "held shut, followed": "#f4e8b6",
    }
    for name, lo, hi in phases:
        for ax in (top, bottom):
            ax.axvspan(lo - start, hi - start, color=colours.get(name, "#eeeeee"), alpha=0.6, lw=0)
        top.text(
            lo - start, 0.98, name, transform=top.get_xaxis_transform(), ha="left", va="top", fontsize=7, rotation=90
        )
    top.plot(list(seconds), p95s, color="black", lw=1, label="signed-in read p95 per second")
    top.axhline(idle * 1.2, color="tab:blue", ls="--", lw=1, label=f"1.2x the idle phases' p95 ({idle * 1.2:.2f} ms)")
    top.set_ylabel("read p95 (ms, log scale)")
    top.set_yscale("log")
    top.legend(loc="upper right", fontsize=8, bbox_to_anchor=(1.0, 0.9))
    copying = [(lo, hi) for name, lo, hi in phases if name in ("full speed", "throttled")]
    shares = [
        gate.open_share(start + s, start + s + 1) if any(lo <= start + s < hi for lo, hi in copying) else float("nan")
        for s in seconds
    ]
    bottom.step(list(seconds), shares, where="post", color="tab:blue", lw=1)
    bottom.set_ylim(-0.05, 1.05)
    bottom.set_ylabel("gate open")
    bottom.set_xlabel("seconds since the run started")
    fig.suptitle("Signed-in reads on the source: idle, full-speed and throttled copies, interleaved")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- phases --------------------------------------------------------------------------------------------------


def copy_phase(options: list[str], limit: float) -> tuple[float, float, float, MoveRange]:
    """``shardmove start ... --wait`` in its own process (as an operator runs it, so the follower's work does not
    compete with the readers for this process); returns (copy start, copy end, copy seconds, move) in wall-clock
    time, from the move's record (set-up and the child's start-up are left out of the window)."""
    proc = command("start", str(LO), str(HI), "--to", TARGET, "--wait", *options)
    try:
        output, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)  # stop following: the copy then finishes unthrottled
        output, _ = proc.communicate()
        log(f"  the copy did not finish within {limit:.0f}s (--limit); reported as unfinished")
    if proc.returncode != 0:
        raise SystemExit(f"shardmove start failed:\n{output}")
    move = MoveRange.objects.order_by("-id").first()
    assert move is not None
    assert move.copy_started_at is not None
    started = move.copy_started_at.timestamp()
    finished = move.copy_finished_at.timestamp() if move.copy_finished_at else time.time()
    return started, finished, finished - started, move


def pooled_p95(reads: Reads, spans: list[tuple[float, float]]) -> tuple[float, int]:
    """The reads' p95 over several phases taken together."""
    samples = [ms for at, ms in reads.samples if any(lo <= at < hi for lo, hi in spans)]
    return (percentile(samples, 95) if samples else float("nan")), len(samples)


def idle_phase(reads: Reads, seconds: float, phases: list[tuple[str, float, float]]) -> float:
    t0 = time.time()
    time.sleep(seconds)
    phases.append(("idle", t0, time.time()))
    p95, n = reads.p95(t0, time.time())
    log(f"idle: read p95 {p95:.2f} ms ({n} reads); load {os.getloadavg()}")
    return p95


def cancel_unmeasured(move: MoveRange, cpu: float) -> None:
    """Cancel the move uncapped and vacuum the target, so every round's copy lands on tables in the same state
    (batched deletes through the dead rows of earlier rounds grow slower each round)."""
    set_quota(None)
    services.move_cancel(move, reporter=Reporter(), dry_run=False, throttle=services.Throttle(10**9, 0.0))
    with connect(TARGET) as conn:
        conn.execute("VACUUM ANALYZE content_generation")
        conn.execute("VACUUM ANALYZE content_usageevent")
    set_quota(cpu)
    time.sleep(3)


def held_phases(args: argparse.Namespace, reads: Reads) -> list[tuple[str, float, float]]:
    """A move open with its gate held shut by this process throughout, so the copy does no work: first with no
    command following it (what an open copy costs the source: its ``COPY`` transactions, the walsenders), then
    with a follower steering it (``refresh --watch``: the controller's probe and the progress polling)."""
    from migrations_tooling.throttle import controller_running, gate_key

    last = MoveRange.objects.order_by("-id").values_list("id", flat=True).first() or 0
    keys = [gate_key(last + n) for n in range(1, 4)]  # the next move's gate, whichever id it gets
    found: list[tuple[str, float, float]] = []
    with psycopg.connect(conninfo_for(TARGET), autocommit=True) as holder:
        for key in keys:
            holder.execute("SELECT pg_advisory_lock(%s)", [key])
        proc = command("start", str(LO), str(HI), "--to", TARGET)
        output, _ = proc.communicate(timeout=args.limit)
        if proc.returncode != 0:
            raise SystemExit(f"shardmove start failed:\n{output}")
        move = MoveRange.objects.order_by("-id").first()
        assert move is not None
        if gate_key(move.id) not in keys:
            raise SystemExit(f"move {move.id} got an id whose gate this process does not hold ({last + 1}-{last + 3})")
        time.sleep(2)  # the table-sync workers start and wait at the gate
        t0 = time.time()
        time.sleep(args.seconds)
        found.append(("held shut", t0, time.time()))
        follower = command("refresh", str(move.id), "--watch", "--interval", "1")
        with connect(TARGET) as conn:
            deadline = time.monotonic() + 120
            while not controller_running(conn, move.id):
                if time.monotonic() > deadline or follower.poll() is not None:
                    raise SystemExit(f"the follower did not start:\n{follower.communicate()[0]}")
                time.sleep(0.2)
        time.sleep(4)  # its slow start ends (it finds the gate held by another session and keeps probing)
        t0 = time.time()
        time.sleep(args.seconds)
        found.append(("held shut, followed", t0, time.time()))
        follower.send_signal(signal.SIGINT)
        follower.communicate(timeout=120)
        moved = MoveRange.objects.get(id=move.id)
        if moved.phase != Phase.COPYING:
            raise SystemExit(f"move {move.id} left copying ({moved.phase}) with its gate held shut")
        cancel_unmeasured(moved, args.cpu)
    for name, lo, hi in found:
        p95, n = reads.p95(lo, hi)
        log(f"{name}: read p95 {p95:.2f} ms ({n} reads); load {os.getloadavg()}")
    return found


def one_round(
    args: argparse.Namespace, reads: Reads, gate: GateWatch, phases: list[tuple[str, float, float]]
) -> dict[str, Any]:
    """Idle, a full-speed copy (cancelled), idle, a throttled copy (cancelled): the throttled copy's figures."""
    idle_phase(reads, args.seconds, phases)
    s, f, seconds_full, move = copy_phase(["--no-throttle"], args.limit)
    full, n_full = reads.p95(s, f)
    phases.append(("full speed", s, f))
    log(f"full-speed copy: {seconds_full:.1f}s, read p95 {full:.2f} ms ({n_full} reads); load {os.getloadavg()}")
    cancel_unmeasured(move, args.cpu)
    before = idle_phase(reads, args.seconds, phases)
    s, f, seconds_throttled, move = copy_phase([], args.limit)
    throttled, n_throttled = reads.p95(s, f)
    phases.append(("throttled", s, f))
    open_share = gate.open_share(s, f)
    move.refresh_from_db()
    state = move.throttle
    log(
        f"throttled copy: {seconds_throttled:.1f}s, read p95 {throttled:.2f} ms ({n_throttled} reads), "
        f"{throttled / before:.2f}x the idle phase before it; budget {state.get('max_probe_ms')} ms from baseline "
        f"{state.get('baseline_ms')} ms (at the end: {state.get('budget_now_ms')} ms from "
        f"{state.get('baseline_now_ms')} ms, {state.get('quiet_windows')} quiet windows), held back "
        f"{state.get('throttled_seconds')}s, gate open {open_share:.0%} of the copy; load {os.getloadavg()}"
    )
    finished = move.phase != Phase.COPYING
    cancel_unmeasured(move, args.cpu)
    held: dict[str, float] = {}
    if args.held:
        for name, lo, hi in held_phases(args, reads):
            phases.append((name, lo, hi))
            held[name] = reads.p95(lo, hi)[0]
    return {
        "held_ms": held,
        "held_to_before": {name: ms / before for name, ms in held.items()},
        "before_ms": before,
        "full_speed_ms": full,
        "throttled_ms": throttled,
        "reads_throttled": n_throttled,
        "copy_seconds": {"full_speed": seconds_full, "throttled": seconds_throttled},
        "throttled_copy_finished": finished,
        "gate_open_share": open_share,
        "throttle": {
            k: state.get(k)
            for k in (
                "max_probe_ms",
                "baseline_ms",
                "baseline_windows_ms",
                "budget_now_ms",
                "baseline_now_ms",
                "quiet_windows",
                "throttled_seconds",
            )
        },
        "span": (s, f),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="generations in the moved range (x2 rows)")
    parser.add_argument("--cpu", type=float, default=0.5, help="CPU quota of each PostgreSQL server")
    parser.add_argument("--readers", type=int, default=4, help="reading threads")
    parser.add_argument("--users", type=int, default=1000, help="signed-in users read (50 generations each)")
    parser.add_argument("--rate", type=float, default=100.0, help="reads per second in all")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each idle phase")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of idle, full speed, idle, throttled")
    parser.add_argument("--limit", type=float, default=300.0, help="longest a copy may take before it is reported")
    held = "after each throttled copy, a move held shut without and with a follower (what following costs)"
    parser.add_argument("--held", action=argparse.BooleanOptionalAction, default=True, help=held)
    parser.add_argument("--follower-cpu", type=float, default=0.5, help="CPU quota of the shardmove commands")
    shares = "cpu.shares of the shardmove commands (as the servers' and the readers': a host of their own)"
    parser.add_argument("--follower-shares", type=int, default=cgroups.HIGH_SHARES, help=shares)
    parser.add_argument("--gate-every", type=float, default=0.2, help="seconds between samples of the gate and CPU")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--chart", type=Path, help="draw the run (PNG) here")
    args = parser.parse_args()

    log(f"machine: {machine()}; load before: {os.getloadavg()}")
    prepare(args.rows, args.users)
    figures: dict[str, Any] = {
        "rows": args.rows * 2,
        "cpu": args.cpu,
        "rate": args.rate,
        "loadavg_start": os.getloadavg(),
    }
    phases: list[tuple[str, float, float]] = []
    with (
        capped([SOURCE, TARGET], args.cpu, args.follower_cpu, args.follower_shares) as notes,
        Reads(args.readers, args.users, args.rate) as reads,
        GateWatch(args.gate_every) as gate,
    ):
        for note in notes:
            log(f"  {note}")
        time.sleep(2)  # connections open, plans cached
        rounds = []
        for number in range(args.rounds):
            log(f"round {number + 1} of {args.rounds}")
            rounds.append(one_round(args, reads, gate, phases))
        idle_phase(reads, args.seconds, phases)  # the last throttled copy has idle phases on both sides too
    idle_spans = [(lo, hi) for name, lo, hi in phases if name == "idle"]
    for found in rounds:
        s, f = found.pop("span")
        around = [span for span in idle_spans if span[1] <= s][-1:] + [span for span in idle_spans if span[0] >= f][:1]
        found["idle_around_ms"] = pooled_p95(reads, around)[0]
        found["throttled_to_before"] = found["throttled_ms"] / found["before_ms"]
        found["throttled_to_idle_around"] = found["throttled_ms"] / found["idle_around_ms"]
        found["full_speed_to_before"] = found["full_speed_ms"] / found["before_ms"]
    kinds = list(dict.fromkeys(name for name, _, _ in phases))
    cpu_by_phase = {}
    for kind in kinds:
        spans = [gate.cpu_between(lo, hi) for name, lo, hi in phases if name == kind]
        spans = [span for span in spans if span]
        cpu_by_phase[kind] = {role: round(median([x[role] for x in spans]), 3) for role in (spans[0] if spans else {})}
        log(f"CPU (median of the {kind} phases, CPUs): {cpu_by_phase[kind]}")
    held_all = {
        kind: pooled_p95(reads, [(lo, hi) for name, lo, hi in phases if name == kind])[0]
        for kind in ("held shut", "held shut, followed")
        if kind in kinds
    }
    idle, n_idle = pooled_p95(reads, idle_spans)
    throttled_all, n_throttled = pooled_p95(reads, [(lo, hi) for name, lo, hi in phases if name == "throttled"])
    full_all, n_full = pooled_p95(reads, [(lo, hi) for name, lo, hi in phases if name == "full speed"])
    to_before = [r["throttled_to_before"] for r in rounds]
    # The same judgement with no move at all: each idle phase against the idle phase before it (the noise floor).
    idle_p95s = [reads.p95(lo, hi)[0] for lo, hi in idle_spans]
    idle_to_idle = [later / earlier for earlier, later in itertools.pairwise(idle_p95s)]
    figures.update(
        {
            "rounds": rounds,
            "throttled_to_before": {"median": median(to_before), "min": min(to_before), "max": max(to_before)},
            "within_1_2_of_before": sum(ratio <= 1.2 for ratio in to_before),
            "pooled_p95_ms": {"idle": idle, "full_speed": full_all, "throttled": throttled_all},
            "pooled_reads": {"idle": n_idle, "full_speed": n_full, "throttled": n_throttled},
            "pooled_ratio_to_idle": {
                "full_speed": full_all / idle,
                "throttled": throttled_all / idle,
                **{kind: ms / idle for kind, ms in held_all.items()},
            },
            "cpu_by_phase": cpu_by_phase,
            "idle_phase_p95_ms": idle_p95s,
            "idle_to_previous_idle": idle_to_idle,
            "idle_within_1_2_of_previous": sum(ratio <= 1.2 for ratio in idle_to_idle),
            "loadavg_end": os.getloadavg(),
            "machine": machine(),
        }
    )
    for number, r in enumerate(rounds):
        log(
            f"round {number + 1}: read p95 before {r['before_ms']:.2f} ms; full speed {r['full_speed_to_before']:.2f}x; "
            f"throttled {r['throttled_ms']:.2f} ms = {r['throttled_to_before']:.2f}x before, "
            f"{r['throttled_to_idle_around']:.2f}x the idle phases around it ({r['idle_around_ms']:.2f} ms); copy "
            f"{r['copy_seconds']['full_speed']:.1f}s full speed, {r['copy_seconds']['throttled']:.1f}s throttled "
            f"({r['copy_seconds']['throttled'] / r['copy_seconds']['full_speed']:.1f}x)"
            + "".join(f"; {name} {ratio:.2f}x before" for name, ratio in r["held_to_before"].items())
        )
    log(
        f"throttled / before: median {median(to_before):.2f} ({min(to_before):.2f}-{max(to_before):.2f}), within 1.2x "
        f"in {figures['within_1_2_of_before']} of {len(rounds)}; pooled over the run: idle {idle:.2f} ms ({n_idle} "
        f"reads), full speed {full_all / idle:.2f}x, throttled {throttled_all:.2f} ms = {throttled_all / idle:.2f}x"
        + "".join(f", {kind} {ms / idle:.2f}x" for kind, ms in held_all.items())
    )
    log(
        f"idle / the idle phase before it (no move: the noise floor): median {median(idle_to_idle):.2f} "
        f"({min(idle_to_idle):.2f}-{max(idle_to_idle):.2f}), within 1.2x in "
        f"{figures['idle_within_1_2_of_previous']} of {len(idle_to_idle)}"
    )
    if args.chart:
        chart(args.chart, reads, gate, phases, idle)
        log(f"chart: {args.chart}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))
    subprocess.run(["uptime"], check=False)


if __name__ == "__main__":
    main()
