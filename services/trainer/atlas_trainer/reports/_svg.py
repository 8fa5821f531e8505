"""Tiny SVG chart primitives (matplotlib is not a dependency): scatter+line and bar charts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 720, 360
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 20, 30, 50


def fmt(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.4g}"


def scatter_with_line(
    points: Sequence[tuple[float, float]],
    line: Sequence[tuple[float, float]],
    *,
    title: str,
    x_label: str,
    y_label: str,
) -> str:
    """Points (trial values) plus a step line (best so far)."""
    everything = list(points) + list(line)
    if not everything:
        return _empty(title)
    xs = [x for x, _ in everything]
    ys = [y for _, y in everything]
    x0, x1 = _span(min(xs), max(xs))
    y0, y1 = _span(min(ys), max(ys))

    def px(x: float) -> float:
        return _LEFT + (x - x0) / (x1 - x0) * (WIDTH - _LEFT - _RIGHT)

    def py(y: float) -> float:
        return HEIGHT - _BOTTOM - (y - y0) / (y1 - y0) * (HEIGHT - _TOP - _BOTTOM)

    dots = "".join(
        f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="#4c78a8" fill-opacity="0.7">'
        f"<title>trial {x:g}: {fmt(y)}</title></circle>"
        for x, y in points
    )
    path = ""
    if line:
        steps = [f"M{px(line[0][0]):.1f},{py(line[0][1]):.1f}"]
        for (_, prev_y), (x, y) in zip(line, line[1:]):
            steps.append(f"L{px(x):.1f},{py(prev_y):.1f}L{px(x):.1f},{py(y):.1f}")
        path = f'<path d="{"".join(steps)}" fill="none" stroke="#e45756" stroke-width="2"/>'
    return _frame(title, x_label, y_label, (x0, x1), (y0, y1), dots + path)


def horizontal_bars(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    x_label: str,
    errors: Sequence[float] | None = None,
) -> str:
    if not labels:
        return _empty(title)
    bar, gap, label_width = 18, 6, 220
    height = _TOP + len(labels) * (bar + gap) + _BOTTOM
    top = max(max(values), 0.0) or 1.0
    low = min(min(values), 0.0)
    span = top - low
    plot_width = WIDTH - label_width - _RIGHT

    def px(v: float) -> float:
        return label_width + (v - low) / span * plot_width

    parts = []
    for i, (label, value) in enumerate(zip(labels, values)):
        y = _TOP + i * (bar + gap)
        start, end = sorted((px(0.0), px(value)))
        parts.append(
            f'<text x="{label_width - 6}" y="{y + bar - 4}" text-anchor="end" '
            f'font-size="12">{escape(_clip(label))}</text>'
            f'<rect x="{start:.1f}" y="{y}" width="{max(end - start, 0.5):.1f}" height="{bar}" '
            f'fill="#4c78a8"><title>{escape(label)}: {fmt(value)}</title></rect>'
        )
        if errors is not None and errors[i] > 0:
            a, b = px(value - errors[i]), px(value + errors[i])
            parts.append(
                f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{y + bar / 2}" y2="{y + bar / 2}" '
                'stroke="#333" stroke-width="1.5"/>'
            )
    axis_y = height - _BOTTOM + 14
    parts.append(
        f'<text x="{label_width}" y="{axis_y}" font-size="11">{fmt(low)}</text>'
        f'<text x="{WIDTH - _RIGHT}" y="{axis_y}" font-size="11" text-anchor="end">'
        f"{fmt(top)}</text>"
        f'<text x="{label_width + plot_width / 2}" y="{axis_y + 18}" font-size="12" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    return _svg(title, WIDTH, height, "".join(parts))


def _frame(
    title: str,
    x_label: str,
    y_label: str,
    xr: tuple[float, float],
    yr: tuple[float, float],
    body: str,
) -> str:
    bottom = HEIGHT - _BOTTOM
    axes = (
        f'<line x1="{_LEFT}" y1="{bottom}" x2="{WIDTH - _RIGHT}" y2="{bottom}" stroke="#333"/>'
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{bottom}" stroke="#333"/>'
        f'<text x="{_LEFT}" y="{bottom + 16}" font-size="11">{fmt(xr[0])}</text>'
        f'<text x="{WIDTH - _RIGHT}" y="{bottom + 16}" font-size="11" text-anchor="end">'
        f"{fmt(xr[1])}</text>"
        f'<text x="{_LEFT - 6}" y="{bottom}" font-size="11" text-anchor="end">{fmt(yr[0])}</text>'
        f'<text x="{_LEFT - 6}" y="{_TOP + 10}" font-size="11" text-anchor="end">'
        f"{fmt(yr[1])}</text>"
        f'<text x="{(WIDTH + _LEFT) / 2}" y="{HEIGHT - 12}" font-size="12" '
        f'text-anchor="middle">{escape(x_label)}</text>'
        f'<text x="16" y="{HEIGHT / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 16 {HEIGHT / 2})">{escape(y_label)}</text>'
    )
    return _svg(title, WIDTH, HEIGHT, axes + body)


def _svg(title: str, width: int, height: int, body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" role="img">'
        f"<title>{escape(title)}</title>"
        f'<text x="{width / 2}" y="18" font-size="14" text-anchor="middle" '
        f'font-weight="bold">{escape(title)}</text>{body}</svg>'
    )


def _empty(title: str) -> str:
    return _svg(title, WIDTH, 80, '<text x="20" y="50" font-size="13">no data yet</text>')


def _span(low: float, high: float) -> tuple[float, float]:
    if high == low:
        pad = abs(low) * 0.05 or 1.0
        return low - pad, high + pad
    pad = (high - low) * 0.05
    return low - pad, high + pad


def _clip(text: str, limit: int = 32) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lines(
    series: Sequence[tuple[str, str, Sequence[tuple[float, float]]]],
    *,
    title: str,
    x_label: str,
    y_label: str,
) -> str:
    """Several polylines with dots, one per ``(name, colour, points)``, and a legend."""
    everything = [p for _, _, points in series for p in points]
    if not everything:
        return _empty(title)
    x0, x1 = _span(min(x for x, _ in everything), max(x for x, _ in everything))
    y0, y1 = _span(min(y for _, y in everything), max(y for _, y in everything))

    def px(x: float) -> float:
        return _LEFT + (x - x0) / (x1 - x0) * (WIDTH - _LEFT - _RIGHT)

    def py(y: float) -> float:
        return HEIGHT - _BOTTOM - (y - y0) / (y1 - y0) * (HEIGHT - _TOP - _BOTTOM)

    body = []
    for index, (name, colour, points) in enumerate(series):
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        body += [
            f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}">'
            f"<title>{escape(name)} {x:g}: {fmt(y)}</title></circle>"
            for x, y in points
        ]
        legend_y = _TOP + 14 * index
        body.append(
            f'<text x="{WIDTH - _RIGHT - 4}" y="{legend_y + 10}" font-size="11" '
            f'text-anchor="end" fill="{colour}">{escape(name)}</text>'
        )
    return _frame(title, x_label, y_label, (x0, x1), (y0, y1), "".join(body))
