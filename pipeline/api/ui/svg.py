"""Small inline SVG pictures: the 256 bits of a PDQ comparison, bars of a few numbers."""

from __future__ import annotations

from typing import Sequence

from pipeline.api.ui.render import Html, esc

CELL = 14


def bit_grid(left: str, right: str) -> Html:
    """The 256 bits of two PDQ hashes as a 16x16 grid (bit 0 top left, row by row), differing ones filled."""
    differ = int(left, 16) ^ int(right, 16)
    cells = []
    for bit in range(256):
        row, col = divmod(bit, 16)
        on = (differ >> (255 - bit)) & 1
        cells.append(f'<rect x="{col * CELL}" y="{row * CELL}" width="{CELL - 1}" height="{CELL - 1}" '
                     f'class="{"bit-differs" if on else "bit-same"}"><title>bit {bit}: '
                     f'{"differs" if on else "same"}</title></rect>')
    side = 16 * CELL
    return Html(f'<svg class="bits" width="{side}" height="{side}" viewBox="0 0 {side} {side}" role="img" '
                f'aria-label="{bin(differ).count("1")} of 256 bits differ">{"".join(cells)}</svg>')


def bars(items: Sequence[tuple[str, float]], unit: str = "") -> Html:
    """Horizontal bars, one per (label, value), scaled to the largest."""
    if not items:
        return Html("")
    top = max(value for _, value in items) or 1
    width, row = 420, 24
    parts = []
    for i, (label, value) in enumerate(items):
        length = max(1, int((width - 160) * value / top)) if value else 0
        y = i * row
        parts.append(f'<text x="0" y="{y + 16}">{esc(label)}</text>'
                     f'<rect x="110" y="{y + 4}" width="{length}" height="{row - 8}" class="bar"/>'
                     f'<text x="{114 + length}" y="{y + 16}">{esc(f"{value:,.0f}{unit}")}</text>')
    return Html(f'<svg class="bars" width="{width}" height="{row * len(items)}" role="img">{"".join(parts)}</svg>')


PALETTE = ("#4a6fa5", "#c8402f", "#3c8d5a", "#b5831f", "#7a4fa0", "#2a8a99")


def _tick(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == 0 else f"{value:.2g}"


def lines(series: dict[str, Sequence[tuple[int, float]]], start_ms: int, end_ms: int, unit: str = "",
          label: str = "") -> Html:
    """A line per series of (time ms, value) over [start_ms, end_ms], a shared y axis from 0, a legend.
    A series with one point is drawn as a dot; an empty chart says so."""
    width, height, left, bottom, top = 580, 150, 84, 20, 8
    plot_w, plot_h = width - left - 8, height - bottom - top
    points = [v for s in series.values() for _, v in s]
    peak = max(points, default=0) or 1
    span = max(1, end_ms - start_ms)

    def xy(t: int, v: float) -> tuple[float, float]:
        return left + plot_w * (t - start_ms) / span, top + plot_h * (1 - v / peak)

    parts = [f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" class="axis"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" class="axis"/>',
             f'<text x="{left - 4}" y="{top + 10}" text-anchor="end">{esc(_tick(peak) + unit)}</text>',
             f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
             f'<text x="{left}" y="{height - 4}">-{esc(round(span / 60_000))}m</text>',
             f'<text x="{left + plot_w}" y="{height - 4}" text-anchor="end">now</text>']
    for i, (name, values) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        coords = [xy(t, v) for t, v in values if start_ms <= t <= end_ms]
        if len(coords) == 1:
            parts.append(f'<circle cx="{coords[0][0]:.1f}" cy="{coords[0][1]:.1f}" r="3" fill="{color}"/>')
        elif coords:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        last = f" {_tick(values[-1][1])}{unit}" if values else " (no data)"
        parts.append(f'<text x="{left + 8 + 150 * (i % 3)}" y="{top + 12 + 14 * (i // 3)}" fill="{color}" '
                     f'class="legend">{esc(name + last)}</text>')
    if not points:
        parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h / 2}" text-anchor="middle" class="empty">'
                     'nothing measured yet</text>')
    return Html(f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="{esc(label)}">'
                f'{"".join(parts)}</svg>')
