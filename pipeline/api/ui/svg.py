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
