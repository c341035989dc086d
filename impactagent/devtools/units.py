"""Numbers for people (``9.61 ms``, not ``0.009612923994609446``), the unit read from the
metric name's suffix as Prometheus names them: ``_seconds`` a duration, ``_bytes`` a size in
powers of 1000, ``_total`` a count; a rate adds ``/s``.

>>> [human(v, "request_seconds") for v in (0.009612923994609446, 0.0000042, 2.5, 95, 0)]
['9.61 ms', '4.2 µs', '2.5 s', '1.58 min', '0 s']
>>> human(1536000, "body_bytes"), human(0.25, "checkout_total", rate=True)
('1.54 MB', '0.25/s')
>>> human(12345.6, "queue_depth"), human(None, "x"), human(0.3333, "", percent=True)
('12,346', '-', '33.3%')
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
    """Three significant digits, whole numbers from 1000 up with thousands separators, no
    trailing zeros.

    >>> [rounded(v) for v in (0, 3, 2.0, 0.1 + 0.2, 3.14159, 999.95, 1234567.5, 0.000123456)]
    ['0', '3', '2', '0.3', '3.14', '1,000', '1,234,568', '0.000123']
    """
    if value == 0:
        return "0"
    if abs(value) >= 999.5:
        return f"{value:,.0f}"
    decimals = max(0, 2 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
