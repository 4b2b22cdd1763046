"""Line charts as inline SVG: no library, no network, readable in any browser (the evaluation
report's training curves, the autoscaler's replicas and metrics over time)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]], title: str, x_label: str,
    width: int = 420, height: int = 240, step: bool = False, floor: float | None = None,
    marks: Sequence[tuple[float, str]] = (),
) -> str:  # fmt: skip
    """One polyline per named series of (x, y) points; `step` draws values held until the next
    point (counts such as replicas); `floor` pins the y axis' low end (0 for counts); `marks`
    are events at an x (an autoscaler's decisions): a dashed vertical line, the words as its
    tooltip."""
    pad = 40
    points_all = [p for points in series.values() for p in points]
    if not points_all:
        return f"<p>{escape(title)}: nothing recorded</p>"
    xs, ys = [x for x, _ in points_all], [y for _, y in points_all]
    low = min(ys) if floor is None else min(floor, min(ys))
    high = max(ys)
    span = (high - low) or 1.0
    first, last = min(xs), max(max(xs), min(xs) + 1)

    def at(x: float, y: float) -> str:
        return (f"{pad + (x - first) / (last - first) * (width - 2 * pad):.1f},"
                f"{height - pad - (y - low) / span * (height - 2 * pad):.1f}")  # fmt: skip

    label = escape(title)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        f'font-size="11" role="img" aria-label="{label}"><text x="{width / 2}" y="14" text-anchor="middle">'
        f"{label}</text>",
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#888"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#888"/>',
        f'<text x="{pad - 4}" y="{pad + 4}" text-anchor="end">{high:.3g}</text>',
        f'<text x="{pad - 4}" y="{height - pad}" text-anchor="end">{low:.3g}</text>',
        f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle">'
        f"{escape(x_label)} {first:g}..{max(xs):g}</text>",
    ]
    for i, (name, points) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        coords = []
        for j, (x, y) in enumerate(points):
            if step and j:
                coords.append(at(x, points[j - 1][1]))
            coords.append(at(x, y))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(coords)}"/>')
        parts.append(
            f'<text x="{width - pad}" y="{pad + 14 * i}" text-anchor="end" fill="{color}">'
            f"{escape(name)}</text>"
        )
    for x, words in marks:
        if first <= x <= last:
            left, _ = at(x, low).split(",")
            parts.append(
                f'<line class="mark" x1="{left}" y1="{pad}" x2="{left}" y2="{height - pad}" stroke="#555" '
                f'stroke-dasharray="4 3"><title>{escape(words)}</title></line>'
            )
    parts.append("</svg>")
    return "".join(parts)
