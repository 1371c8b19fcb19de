"""Charts drawn on the server as inline SVG: no script, nothing loaded from anywhere.

Each function takes plain numbers and returns SVG markup (escaped text,
``role="img"`` with a title), so pages and tests need no chart library.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ("#4f46e5", "#0891b2", "#16a34a", "#ea580c", "#db2777", "#65a30d", "#9333ea", "#0d9488")
WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 40


def _ticks(maximum: float) -> list[float]:
    if maximum <= 0:
        return [0.0, 1.0]
    step = 10 ** len(str(int(maximum))) / 10 if maximum >= 1 else maximum / 4
    while maximum / step > 6:
        step *= 2
    ticks, value = [], 0.0
    while value <= maximum * 1.0001:
        ticks.append(value)
        value += step
    if ticks[-1] < maximum:
        ticks.append(value)
    return ticks


def _label(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _frame(title: str, top: float, labels: Sequence[str]) -> tuple[list[str], list[float]]:
    ticks = _ticks(top)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}"><title>{escape(title)}</title>',
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
    ]
    plot_h = HEIGHT - TOP - BOTTOM
    for tick in ticks:
        y = TOP + plot_h - plot_h * tick / ticks[-1]
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e7eb"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#6b7280">{_label(tick)}</text>'
        )
    n = max(len(labels), 1)
    every = max(1, n // 8)
    for i, text in enumerate(labels):
        if i % every == 0:
            x = LEFT + (WIDTH - LEFT - RIGHT) * (i + 0.5) / n
            parts.append(
                f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle" font-size="11" '
                f'fill="#6b7280">{escape(text)}</text>'
            )
    return parts, ticks


def line_chart(title: str, labels: Sequence[str], series: dict[str, Sequence[float]]) -> str:
    """One line per series over the same x labels (days)."""
    top = max((max(values, default=0) for values in series.values()), default=0)
    parts, ticks = _frame(title, top, labels)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(labels), 1)
    for index, (name, values) in enumerate(series.items()):
        color = PALETTE[index % len(PALETTE)]
        points = " ".join(
            f"{LEFT + plot_w * (i + 0.5) / n:.1f},{TOP + plot_h - plot_h * v / ticks[-1]:.1f}"
            for i, v in enumerate(values)
        )
        parts.append(
            f'<polyline class="series" data-series="{escape(name)}" fill="none" stroke="{color}" '
            f'stroke-width="2" points="{points}"/>'
        )
        parts.append(
            f'<text x="{LEFT + 8 + 140 * index}" y="{TOP + 12}" font-size="12" fill="{color}">{escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(title: str, labels: Sequence[str], values: Sequence[float]) -> str:
    """One bar per label."""
    parts, ticks = _frame(title, max(values, default=0), labels)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(labels), 1)
    width = plot_w / n * 0.7
    for i, value in enumerate(values):
        height = plot_h * value / ticks[-1]
        x = LEFT + plot_w * (i + 0.5) / n - width / 2
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{TOP + plot_h - height:.1f}" width="{width:.1f}" '
            f'height="{height:.1f}" fill="{PALETTE[0]}"><title>{escape(labels[i])}: {_label(value)}</title></rect>'
        )
    parts.append("</svg>")
    return "".join(parts)
