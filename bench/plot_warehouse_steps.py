"""Chart of initial loads into DuckDB, step by step, from ``bench_warehouse.py --json`` results.

    .venv/bin/python bench/plot_warehouse_steps.py OUT.png "LABEL=results.json" ["LABEL=other.json" ...]

Each lane is the DuckDB load of the run's median round (by ratio): its steps as ``bench_warehouse.py`` timed them
(each table's read and insert, commits, the daily aggregates, closing the file), under a bar as long as the raw
COPY around it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PHASE_COLOURS = {
    "read and insert": "#4c72b0",
    "commit": "#c44e52",
    "aggregates": "#dd8452",
    "close": "#8172b3",
}


def plot_phases(out: Path, runs: list[str]) -> None:
    """One lane per ``LABEL=results.json`` (a ``--json`` of bench_warehouse.py): the DuckDB load of its median round,
    step by step, under a bar as long as the raw COPY around it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 1.4 + 1.2 * len(runs)))
    labels = []
    sizes = set()
    for lane, run in enumerate(runs):
        label, _, path = run.rpartition("=")
        results = json.loads(Path(path).read_text())
        sizes.add(results["rows"])
        rounds = [r["duckdb"] for r in results["rounds"] if "duckdb" in r]
        load = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
        y = lane * 3
        copy_s = (load["copy_before_s"] + load["copy_after_s"]) / 2
        ax.broken_barh([(0, copy_s)], (y + 1.6, 0.8), color="#999999")
        ax.text(copy_s + 0.03, y + 2.0, f"raw COPY {copy_s:.2f} s", va="center", fontsize=8)
        for phase, begin, end in load["phases"]:
            ax.broken_barh([(begin, end - begin)], (y, 1.4), color=PHASE_COLOURS[phase], edgecolor="white")
        ax.text(load["load_s"] + 0.03, y + 0.7, f"load {load['load_s']:.2f} s, ratio {load['ratio']:.2f}",
                va="center", fontsize=8)  # fmt: skip
        labels.append((y + 1.2, label or Path(path).stem))
    ax.set_yticks([y for y, _ in labels], [text for _, text in labels])
    ax.set_xlabel("seconds from the start of the load (white gaps: schema, dimensions, slots, checks)")
    ax.set_title(f"Initial load into DuckDB, {' / '.join(f'{n:,}' for n in sorted(sizes))} rows, step by step")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in PHASE_COLOURS.values()]
    ax.set_xlim(0, max(ax.get_xlim()[1], 1) * 1.3)
    ax.set_ylim(-0.5, 3 * len(runs) + 1.5)
    ax.legend(handles, list(PHASE_COLOURS), loc="upper right", ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    plot_phases(Path(sys.argv[1]), sys.argv[2:])
