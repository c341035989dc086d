"""Values as unleash-server's JavaScript reads and writes them: ``JSON.parse``, numbers as Joi,
Ajv and ``Number.prototype.toString`` treat them, names sanitised per UTF-16 code unit (an emoji
becomes two ``_``), and bucket dates as ajv-formats and ``Date`` read them.

>>> hour_of(js_date_ms("2026-11-25T10:59:59+01:00"))
'2026-11-25T09:00:00Z'
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from decimal import Decimal
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
    # repr's shortest digits that read back as x, and where the decimal point falls in them.
    _, numerals, exponent = Decimal(repr(abs(x))).normalize().as_tuple()
    digits = "".join(map(str, numerals))
    point = len(digits) + int(exponent)
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


_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")
_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_LITERALS = {"true": True, "false": False, "null": None}
_scanstring: Any = getattr(json.decoder, "scanstring")  # noqa: B009 (not in the stubs)


def json_document(text: str) -> Any:
    """``JSON.parse(text)``: no depth limit, integers of any length (JavaScript reads every
    number as a double; Python's ``int()`` refuses past 4,300 digits), lone surrogates as
    U+FFFD (what the server writes for them). Raises ValueError."""
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON value")

    try:
        document = json.loads(text, parse_constant=refuse, parse_int=_json_int)
    except RecursionError:
        document = _deep_document(text)
    return _without_surrogates(document) if _SURROGATE.search(text) else document


def _json_int(digits: str) -> int | float:
    return int(digits) if len(digits) < 4000 else float(digits)


def _without_surrogates(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings (keys too) as U+FFFD, iteratively."""
    def clean(text: str) -> str:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")

    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        item = container[key]
        if isinstance(item, str):
            container[key] = clean(item)
        elif isinstance(item, list):
            stack += [(item, i) for i in range(len(item))]
        elif isinstance(item, dict):
            cleaned = {clean(k): v for k, v in item.items()}
            if cleaned.keys() != item.keys():
                item.clear()
                item.update(cleaned)
            stack += [(item, k) for k in item]
    return root[0]


def _deep_document(text: str) -> Any:
    """JSON past the recursion limit: the open containers are a list, not the call stack."""
    containers: list[Any] = []  # innermost last
    keys: list[str | None] = []  # beside each, an object's pending key
    at = _skip(text, 0)
    while True:
        value: Any
        if text.startswith(("[", "{"), at):
            char = text[at]
            at = _skip(text, at + 1)
            if not text.startswith("]" if char == "[" else "}", at):
                containers.append([] if char == "[" else {})
                keys.append(None)
                if char == "{":
                    keys[-1], at = _key(text, at)
                continue
            value, at = ([] if char == "[" else {}), at + 1
        else:
            value, at = _scalar(text, at)
        # Place the value, then close every container that ends here.
        while True:
            at = _skip(text, at)
            if not containers:
                if at != len(text):
                    raise ValueError(f"extra data at {at}")
                return value
            container = containers[-1]
            closer = "}" if isinstance(container, dict) else "]"
            if closer == "}":
                container[keys[-1]] = value
            else:
                container.append(value)
            if text.startswith(",", at):
                at = _skip(text, at + 1)
                if closer == "}":
                    keys[-1], at = _key(text, at)
                break
            if not text.startswith(closer, at):
                raise ValueError(f"',' or {closer!r} is expected at {at}")
            at += 1
            keys.pop()
            value = containers.pop()


def _scalar(text: str, at: int) -> tuple[Any, int]:
    """The string, number or literal at ``at``, and where it ends."""
    if at >= len(text):
        raise ValueError("unexpected end of JSON")
    if text[at] == '"':
        value: tuple[Any, int] = _scanstring(text, at + 1)
        return value
    number = _NUMBER.match(text, at)
    if number is not None:
        digits = number.group(0)
        return (float(digits) if number.group(1) or number.group(2) else _json_int(digits),
                number.end())
    for literal, meaning in _LITERALS.items():
        if text.startswith(literal, at):
            return meaning, at + len(literal)
    raise ValueError(f"unexpected {text[at]!r} at {at}")


def _key(text: str, at: int) -> tuple[str, int]:
    """An object's key at ``at``, and where its value starts."""
    if not text.startswith('"', at):
        raise ValueError(f"a key is expected at {at}")
    key, at = _scanstring(text, at + 1)
    at = _skip(text, at)
    if not text.startswith(":", at):
        raise ValueError(f"':' is expected at {at}")
    return key, _skip(text, at + 1)


def _skip(text: str, at: int) -> int:
    return _JSON_SPACE.match(text, at).end()  # type: ignore[union-attr]


#: RFC 3339 as ajv-formats checks it.
_DATE_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[tT ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
                        r"(?:\.([0-9]+))?(?:([zZ])|([+-])([0-9]{2}):?([0-9]{2}))?\Z")
#: JavaScript's dates end 8.64e15 ms either side of 1970.
MAX_DATE_MS = 8_640_000_000_000_000
#: 0001-01-01T00:00:00Z: the server cannot write a count filed before it.
YEAR_ONE_MS = -62_135_596_800_000
_HOUR_MS = 3_600_000
_EPOCH = date(1970, 1, 1)
#: 400 Gregorian years: the calendar repeats after them.
_ERA_DAYS = 146_097


def js_date_ms(value: Any) -> int | None:
    """Milliseconds since 1970 of a bucket date (a date-time, or an integer timestamp), or
    None where the server answers 400."""
    if isinstance(value, str):
        match = _DATE_TIME.match(value)
        if match is None:
            number = ajv_number(value) if value.strip(JS_SPACE) else None
            return js_date_ms(number) if is_number(number) else None
        return _date_time_ms(match)
    if is_number(value) and value == int(value) and abs(value) <= MAX_DATE_MS:
        return int(value)
    return None


def _date_time_ms(match: re.Match[str]) -> int | None:
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    try:  # year 0 (a leap year, as 400 is) read 400 years later
        days = (date(year or 400, month, day) - _EPOCH).days - (0 if year else _ERA_DAYS)
    except ValueError:
        return None
    if hour > 23 or minute > 59 or second > 59:
        return None
    offset = 0
    if match.group(9):
        offset_hours, offset_minutes = int(match.group(10)), int(match.group(11))
        if offset_hours > 23 or offset_minutes > 59:
            return None
        offset = (offset_hours * 60 + offset_minutes) * (-1 if match.group(9) == "-" else 1)
    millis = int((match.group(7) or "0")[:3].ljust(3, "0"))
    moment = (((days * 24 + hour) * 60 + minute - offset) * 60 + second) * 1000 + millis
    return moment if abs(moment) <= MAX_DATE_MS else None


def hour_of(ms: int) -> str:
    """The hour ``ms`` falls in, as ``toISOString()`` writes it (without milliseconds)."""
    days, hour = divmod(ms // _HOUR_MS, 24)
    eras, days = divmod(days, _ERA_DAYS)
    day = _EPOCH + timedelta(days)
    year = day.year + 400 * eras
    shown = f"{year:04d}" if 0 <= year <= 9999 else f"{'-' if year < 0 else '+'}{abs(year):06d}"
    return f"{shown}-{day.month:02d}-{day.day:02d}T{hour:02d}:00:00Z"
