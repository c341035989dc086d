"""Values as unleash-server's JavaScript reads and writes them.

Numbers written the JavaScript way, read as Joi and Ajv read them; names sanitised per
UTF-16 code unit (an emoji becomes two ``_``).
"""

from __future__ import annotations

import re
from typing import Any

from ..core._naming import NAME_PATTERN

Number = int | float

# [0-9], not \d: Python's \d also matches other scripts' digits.
_JOI_NUMBER = re.compile(r"\s*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:e[+-]?[0-9]+)?\s*\Z",
                         re.IGNORECASE)
#: What JavaScript's ``Number(text)`` trims.
JS_SPACE = "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007" \
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_JS_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_JS_PREFIXED = re.compile(r"0(?:[xX]([0-9a-fA-F]+)|[oO]([0-7]+)|[bB]([01]+))\Z")
_JS_INFINITY = re.compile(r"([+-]?)Infinity\Z")
_NAME_CHAR = re.compile(r"[a-zA-Z0-9_]")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def joi_number(value: Any) -> Number | None:
    """Joi's ``number()`` with conversion, or None where it refuses ``value`` (a string
    whose number does not keep every digit it spells, ``"1.50"``, included)."""
    if is_number(value):
        number: Number = value
        return number
    if not (isinstance(value, str) and _JOI_NUMBER.match(value)):
        return None
    text = value.strip()
    number = float(text)
    if number in (float("inf"), float("-inf")):
        return None
    printed = js_number(number)
    if "e" in text.lower():
        if _significant(text) != _significant(printed):
            return None
    elif "e" not in printed and printed != _normalized_decimal(text):
        return None
    return 0.0 if number == 0 else number


def _significant(text: str) -> str:
    text = re.sub(r"[eE][+-]?[0-9]+\Z", "", text).replace(".", "", 1)
    return re.sub(r"\A[+-]?0*", "", text.rstrip("0"))


def _normalized_decimal(text: str) -> str:
    text = re.sub(r"\A\+", "", text)
    text = re.sub(r"\.0*\Z", "", text)
    text = re.sub(r"\A(-?)\.([^.]*)\Z", r"\g<1>0.\2", text)
    text = re.sub(r"\A(-?)0+([0-9])", r"\1\2", text)
    if "." in text and text.endswith("0"):
        text = text.rstrip("0")
    return "0" if text == "-0" else text


def js_to_number(text: str) -> float | None:
    """JavaScript's ``Number(text)`` (``" "`` is 0, ``"0x10"`` 16), or None for NaN."""
    text = text.strip(JS_SPACE)
    if not text:
        return 0.0
    prefixed = _JS_PREFIXED.match(text)
    if prefixed:
        digits = next(group for group in prefixed.groups() if group)
        return float(int(digits, (16, 8, 2)[prefixed.groups().index(digits)]))
    infinity = _JS_INFINITY.match(text)
    if infinity:
        return float("-inf") if infinity.group(1) == "-" else float("inf")
    return float(text) if _JS_DECIMAL.match(text) else None


def ajv_number(value: Any) -> Number | None:
    """Ajv's coercion where a number belongs, or None."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if is_number(value):
        number: Number = value
        return number
    if isinstance(value, str) and value:
        converted = js_to_number(value)
        if converted is not None and converted.is_integer() and abs(converted) < 2**63:
            return int(converted)
        return converted
    return None


def ajv_null(value: Any) -> bool:
    """Whether Ajv coerces ``value`` to ``null``: ``null``, ``""``, ``0``, ``false``."""
    return value is None or value is False or (value == "" and isinstance(value, str)) or (
        is_number(value) and value == 0)


def js_string(value: Any) -> str:
    """JavaScript's ``String(value)``, for the scalars JSON has."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        # JSON.parse reads an integer as a double.
        return js_number(float(value)) if abs(value) > 2**53 else str(value)
    if isinstance(value, float):
        return js_number(value)
    return str(value)


def js_number(value: Number) -> str:
    """``Number.prototype.toString()`` of ``value`` as a double."""
    x = float(value)
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
    return NAME_PATTERN.match(sanitized) is not None
