"""A bucket's dates as the server reads them (ajv-formats, then JavaScript's ``Date``) and
the hour it files flag counts under.

>>> hour_of(js_date_ms("2026-11-25T10:59:59+01:00"))
'2026-11-25T09:00:00Z'
"""

from __future__ import annotations

import re
from typing import Any

from .jsvalues import JS_SPACE, ajv_number, is_number

#: RFC 3339 as ajv-formats checks it.
_DATE_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})[tT ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
                        r"(?:\.([0-9]+))?(?:([zZ])|([+-])([0-9]{2}):?([0-9]{2}))?\Z")
#: JavaScript's dates end 8.64e15 ms either side of 1970.
MAX_DATE_MS = 8_640_000_000_000_000
#: 0001-01-01T00:00:00Z: the server cannot write a count filed before it.
YEAR_ONE_MS = -62_135_596_800_000
_HOUR_MS = 3_600_000


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
    if not (1 <= month <= 12 and 1 <= day <= _days_in_month(year, month)
            and hour <= 23 and minute <= 59 and second <= 59):
        return None
    offset = 0
    if match.group(9):
        offset_hours, offset_minutes = int(match.group(10)), int(match.group(11))
        if offset_hours > 23 or offset_minutes > 59:
            return None
        offset = (offset_hours * 60 + offset_minutes) * (-1 if match.group(9) == "-" else 1)
    millis = int((match.group(7) or "0")[:3].ljust(3, "0"))
    moment = (((_days_from_civil(year, month, day) * 24 + hour) * 60 + minute - offset)
              * 60 + second) * 1000 + millis
    return moment if abs(moment) <= MAX_DATE_MS else None


def hour_of(ms: int) -> str:
    """The hour ``ms`` falls in, as ``toISOString()`` writes it (without milliseconds)."""
    hour = ms // _HOUR_MS
    days, hour_of_day = divmod(hour, 24)
    year, month, day = _civil_from_days(days)
    shown = f"{year:04d}" if 0 <= year <= 9999 else f"{'-' if year < 0 else '+'}{abs(year):06d}"
    return f"{shown}-{month:02d}-{day:02d}T{hour_of_day:02d}:00:00Z"


def _days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def _civil_from_days(days: int) -> tuple[int, int, int]:
    days += 719468
    era = days // 146097
    day_of_era = days - era * 146097
    year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36524
                   - day_of_era // 146096) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_index = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * month_index + 2) // 5 + 1
    month = month_index + (3 if month_index < 10 else -9)
    return year_of_era + era * 400 + (month <= 2), month, day
