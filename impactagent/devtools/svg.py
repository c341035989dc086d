"""Line charts as SVG, written on the server: no JavaScript, so the page draws offline and a
test reads each series (``<g class="series" data-series="<name>">``) from the markup; numbers
for people, the unit read from the metric name's suffix as Prometheus names them.

>>> human(0.009612923994609446, "request_seconds"), human(0.25, "checkout_total", rate=True)
('9.61 ms', '0.25/s')

>>> chart = line_chart({"blue": [(0, 1.0), (10, None), (20, 3.0)]}, (0, 30),
...                    {"blue": "#0072B2"}, str)
>>> chart.count("<circle"), chart.count("<polyline"), 'data-series="blue"' in chart
(2, 2, True)
"""

from __future__ import annotations

import html
import math
import time
from itertools import groupby
from typing import Callable, Sequence

Point = tuple[float, float | None]

WIDTH, HEIGHT = 560, 190
LEFT, RIGHT, TOP, BOTTOM = 70, 12, 10, 26
#: Okabe and Ito's palette: told apart by most colour-blind people too.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000")
FIXED = {"disabled": "#999999", "not_evaluated": "#cccccc", "all": "#0072B2"}


def colours(names: Sequence[str]) -> dict[str, str]:
    """A colour per series name, so that one variant has one colour on every chart."""
    chosen = {n: FIXED[n] for n in names if n in FIXED}
    others = sorted(n for n in set(names) if n not in FIXED)
    chosen.update({n: PALETTE[i % len(PALETTE)] for i, n in enumerate(others)})
    return chosen


def line_chart(series: dict[str, list[Point]], x_range: tuple[float, float],
               colour: dict[str, str], label: Callable[[float], str], *,
               y_min: str = "zero", title: str = "") -> str:
    """An SVG chart of ``series`` (``{name: [(time, value or None)]}``) over ``x_range``,
    y ticks labelled by ``label``; the y axis starts at zero unless ``y_min="auto"``."""
    values = [v for points in series.values() for _, v in points if v is not None]
    low = min(values, default=0.0) if y_min == "auto" else min([0.0, *values])
    high = max(values, default=1.0)
    if high <= low:
        high = low + (abs(low) or 1.0)
    tick = nice((high - low) / 4)
    low, high = math.floor(low / tick) * tick, math.ceil(high / tick) * tick
    ticks = round((high - low) / tick)
    x0, x1 = x_range
    span = (x1 - x0) or 1.0

    def x(t: float) -> float:
        return LEFT + (t - x0) / span * (WIDTH - LEFT - RIGHT)

    def y(v: float) -> float:
        return TOP + (high - v) / (high - low) * (HEIGHT - TOP - BOTTOM)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="{WIDTH}" height="{HEIGHT}" role="img" '
             f'aria-label="{html.escape(title)}" data-y-min="{_n(low)}" '
             f'data-y-max="{_n(high)}">']
    for i in range(ticks + 1):  # horizontal grid lines and y labels
        v = low + tick * i
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_n(y(v))}" '
                     f'y2="{_n(y(v))}" stroke="#e4e4e4"/>'
                     f'<text x="{LEFT - 6}" y="{_n(y(v) + 4)}" text-anchor="end" '
                     f'font-size="11" fill="#555">{html.escape(label(v))}</text>')
    for i in range(4):  # x labels, UTC clock times
        t = x0 + span * i / 3
        anchor = ("start", "middle", "middle", "end")[i]
        parts.append(f'<text x="{_n(x(t))}" y="{HEIGHT - 8}" text-anchor="{anchor}" '
                     f'font-size="11" fill="#555">'
                     f'{time.strftime("%H:%M:%S", time.gmtime(t))}</text>')
    for name, points in sorted(series.items()):
        stroke = colour.get(name, "#333")
        parts.append(f'<g class="series" data-series="{html.escape(name)}" '
                     f'stroke="{stroke}" fill="{stroke}">')
        for run in _runs(points):
            coordinates = " ".join(f"{_n(x(t))},{_n(y(v))}" for t, v in run)
            parts.append(f'<polyline fill="none" stroke-width="2" points="{coordinates}"/>')
        parts.extend(f'<circle cx="{_n(x(t))}" cy="{_n(y(v))}" r="2.5" data-t="{_n(t)}" '
                     f'data-value="{v!r}"/>' for t, v in points if v is not None)
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def nice(step: float) -> float:
    """The smallest round step (1, 2, 2.5 or 5 times a power of ten) of at least ``step``."""
    power = 10.0 ** math.floor(math.log10(step))
    return next((f * power for f in (1.0, 2.0, 2.5, 5.0) if f * power >= step * (1 - 1e-9)),
                10 * power)


def _runs(points: list[Point]) -> list[list[tuple[float, float]]]:
    """The runs of points with a value, split where one has none."""
    return [[(t, v) for t, v in run if v is not None]
            for gap, run in groupby(points, key=lambda point: point[1] is None) if not gap]


def _n(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if math.isfinite(value) else "0"


_DURATIONS = ((60.0, "min"), (1.0, "s"), (1e-3, "ms"), (1e-6, "µs"))
_SIZES = ((1e9, "GB"), (1e6, "MB"), (1e3, "kB"), (1.0, "B"))


def unit_of(name: str) -> str:
    """``seconds``, ``bytes``, ``count`` or ``""``, from the metric's name."""
    for suffix in ("seconds", "bytes"):
        if name.endswith("_" + suffix) or name == suffix:
            return suffix
    return "count" if name.endswith("_total") else ""


def human(value: float | None, name: str = "", *, rate: bool = False, percent: bool = False) -> str:
    """``value`` of metric ``name`` for people, with its unit (``-`` for no value)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if percent:
        return rounded(value * 100) + "%"
    unit = unit_of(name)
    scales: tuple[tuple[float, str], ...] = (
        _DURATIONS if unit == "seconds" else _SIZES if unit == "bytes" else ())
    suffix = "/s" if rate else ""
    for size, symbol in scales:
        if abs(value) >= size or symbol == scales[-1][1] or (value == 0 and size == 1.0):
            return f"{rounded(value / size)} {symbol}{suffix}"
    return rounded(value) + suffix


def rounded(value: float) -> str:
    """Three significant digits, no trailing zeros; from 1000 up whole, with separators."""
    if value == 0:
        return "0"
    if abs(value) >= 999.5:
        return f"{value:,.0f}"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
