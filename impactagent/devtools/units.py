"""Numbers for people, the unit read from the metric name's suffix as Prometheus names them.

>>> human(0.009612923994609446, "request_seconds"), human(0.25, "checkout_total", rate=True)
('9.61 ms', '0.25/s')
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

_DURATIONS = ((60.0, "min"), (1.0, "s"), (1e-3, "ms"), (1e-6, "µs"))
_SIZES = ((1e9, "GB"), (1e6, "MB"), (1e3, "kB"), (1.0, "B"))


def unit_of(name: str) -> str:
    """``seconds``, ``bytes``, ``count`` or ``""``, from the metric's name."""
    for suffix in ("seconds", "bytes"):
        if name.endswith("_" + suffix) or name == suffix:
            return suffix
    return "count" if name.endswith("_total") else ""


def human(value: Optional[float], name: str = "", *, rate: bool = False,
          percent: bool = False) -> str:
    """``value`` of metric ``name`` for people, with its unit (``-`` for no value)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if percent:
        return rounded(value * 100) + "%"
    unit = unit_of(name)
    scales: Tuple[Tuple[float, str], ...] = (
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
