"""JSON values as unleash-server (JavaScript) reads them, for the receiver and ``check``.

The server is written in JavaScript, and three of its habits decide what it stores:

- ``String(x)``: a number used as a label value or an app name becomes text the JavaScript
  way (``1e-7``, ``2.5``, ``1e+21``, never ``1e-07`` or ``3.0``);
- Joi's ``number()`` converts: a JSON number, or a string that spells one (``"5"``,
  ``" 1e3 "``) is taken as that number; ``true`` is not a number;
- names are sanitised per UTF-16 code unit: every character outside ``[a-zA-Z0-9_]`` becomes
  ``_``, and a character outside the Basic Multilingual Plane (an emoji) is two of them.

>>> js_string(1e-7), js_string(2.5), js_string(3.0), js_string(True), js_string(10**16)
('1e-7', '2.5', '3', 'true', '10000000000000000')
>>> joi_number(" 1e3 "), joi_number("0x10"), joi_number(True)
(1000.0, None, None)
>>> sanitize("émoji😀-x")
'_moji___x'
"""

from __future__ import annotations

import re
from typing import Any, Optional, Union

Number = Union[int, float]

_JOI_NUMBER = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?\s*\Z", re.IGNORECASE)
_NAME_CHAR = re.compile(r"[a-zA-Z0-9_]")


def is_number(value: Any) -> bool:
    """A JSON number (``true`` and ``false`` are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def joi_number(value: Any) -> Optional[Number]:
    """What Joi's ``number()`` (with conversion, as the server validates) makes of ``value``:
    the number, or None when it refuses it. Range checks are the caller's."""
    if is_number(value):
        return value
    if isinstance(value, str) and _JOI_NUMBER.match(value):
        return float(value.strip())
    return None


def js_string(value: Any) -> str:
    """``String(value)`` in JavaScript, for the scalars JSON has."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return js_number(float(value)) if abs(value) >= 10**21 else str(value)
    if isinstance(value, float):
        return js_number(value)
    return str(value)


def js_number(x: float) -> str:
    """``Number.prototype.toString()``: the shortest round-trip digits, laid out with an
    exponent only below ``1e-6`` and from ``1e21`` on."""
    if x != x:
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    mantissa, _, exponent = f"{abs(x)!r}".partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # The position of the decimal point relative to the start of ``digits``.
    point = len(whole.lstrip("0")) if whole.strip("0") else -(len(fraction) - len(
        fraction.lstrip("0")))
    point += int(exponent or 0)
    digits = digits.rstrip("0") or "0"
    if -6 < point <= 21:
        if point <= 0:
            return f"{sign}0.{'0' * -point}{digits}"
        if point >= len(digits):
            return sign + digits + "0" * (point - len(digits))
        return f"{sign}{digits[:point]}.{digits[point:]}"
    power = point - 1
    head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{head}e{'+' if power > 0 else '-'}{abs(power)}"


def sanitize(name: str) -> str:
    """The server's name sanitising: ``[^a-zA-Z0-9_]`` becomes ``_`` per UTF-16 code unit."""
    return "".join(c if _NAME_CHAR.match(c) else ("__" if ord(c) > 0xFFFF else "_")
                   for c in name)


def valid_name(sanitized: str) -> bool:
    """A sanitised name the server keeps: it starts with a letter or ``_``."""
    return bool(sanitized) and (sanitized[0] == "_" or (sanitized[0].isascii()
                                                        and sanitized[0].isalpha()))
