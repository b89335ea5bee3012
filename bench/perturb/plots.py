"""The bias probes' figure: a forest plot of the rating change per cell (PNG, drawn with PIL: no plotting library).

One line per (direction, characteristic): the edit's mean change (dot) and its interval (bar), the placebo's on the
same cell in grey just below, a star after the label when the cell is significant after correction, and the zero
line. The axis is symmetric around zero and spans every interval.
"""

from __future__ import annotations

import io
import math
from typing import Any

EDIT_COLOUR = (31, 90, 180)
PLACEBO_COLOUR = (150, 150, 150)
LABEL_WIDTH = 300
PLOT_WIDTH = 420
ROW = 26
TOP = 40
BOTTOM = 40


def _finite(*values: float) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def shift_plot(cells: list[dict[str, Any]], edit: str, placebo: str | None, title: str) -> bytes:
    """PNG bytes of the forest plot of ``cells`` (`stats.cells` entries of one eps and reading)."""
    from PIL import Image, ImageDraw, ImageFont

    mine = [c for c in cells if c["edit"] == edit]
    controls = {(c["direction"], c["characteristic"]): c for c in cells if placebo and c["edit"] == placebo}
    spread = _finite(*[v for c in cells for v in (c["ci_low"], c["ci_high"], c["change"])])
    limit = max([abs(v) for v in spread] + [0.5])
    limit = math.ceil(limit * 2) / 2
    width, height = LABEL_WIDTH + PLOT_WIDTH + 30, TOP + BOTTOM + ROW * max(len(mine), 1)
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    x0, x1 = LABEL_WIDTH, LABEL_WIDTH + PLOT_WIDTH

    def x(value: float) -> float:
        return x0 + (value + limit) / (2 * limit) * (x1 - x0)

    draw.text((10, 10), title, fill="black", font=font)
    draw.line([(x(0), TOP - 5), (x(0), height - BOTTOM + 5)], fill=(200, 200, 200), width=1)
    for i, cell in enumerate(mine):
        y = TOP + ROW * i + ROW / 2 - 4
        label = f"{cell['direction']} | {cell['characteristic']}" + (" *" if cell.get("significant") else "")
        draw.text((10, y - 6), label[:48], fill="black", font=font)
        for entry, colour, dy in ((cell, EDIT_COLOUR, 0), (controls.get((cell["direction"], cell["characteristic"])),
                                                           PLACEBO_COLOUR, 8)):
            if entry is None or not _finite(entry["change"]):
                continue
            low, high = entry["ci_low"], entry["ci_high"]
            if _finite(low, high) and len(_finite(low, high)) == 2:
                draw.line([(x(low), y + dy), (x(high), y + dy)], fill=colour, width=2)
            cx = x(entry["change"])
            draw.ellipse([cx - 3, y + dy - 3, cx + 3, y + dy + 3], fill=colour)
    axis_y = height - BOTTOM + 8
    draw.line([(x0, axis_y), (x1, axis_y)], fill="black", width=1)
    for value in (-limit, -limit / 2, 0.0, limit / 2, limit):
        draw.line([(x(value), axis_y - 3), (x(value), axis_y + 3)], fill="black")
        draw.text((x(value) - 10, axis_y + 6), f"{value:+.2g}" if value else "0", fill="black", font=font)
    legend = f"{edit} (blue)" + (f", {placebo} (grey)" if placebo else "") + "; * significant after correction"
    draw.text((x0, TOP - 22), legend, fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
