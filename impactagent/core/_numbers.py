"""The numbers an Unleash server takes, and turning what an app records into them.

The server takes a finite JSON number within ``|x| <= 2**53 - 1``; one value past these
makes it discard the body's whole ``impactMetrics`` array. So values are settled when
recorded: ``int`` and ``float`` as they are, other numbers converted, ``bool`` and
non-numbers refused. What is out of range is each kind's to decide.

>>> from fractions import Fraction
>>> to_number(Fraction(3, 2), "gauge 'g': set()")
1.5
>>> to_number(True, "gauge 'g': set()")
Traceback (most recent call last):
TypeError: gauge 'g': set() takes a number, got a bool (True): record 1 or 0
"""

from __future__ import annotations

import math
import operator
from typing import Any, Union

from .server_limits import MAX_SAFE_INTEGER

MAX_SAFE = MAX_SAFE_INTEGER
MAX_SAFE_FLOAT = float(MAX_SAFE)

Number = Union[int, float]


def to_number(value: Any, what: str) -> Number:
    """``value`` as an exact ``int`` or ``float`` (too large for a float: an infinity), or a
    ``TypeError`` naming ``what``."""
    cls = value.__class__
    if cls is int or cls is float:
        exact: Number = value
        return exact
    if isinstance(value, bool) or (cls.__module__ == "numpy" and cls.__name__ in ("bool_", "bool")):
        raise TypeError(f"{what} takes a number, got a bool ({value!r}): record 1 or 0")
    if hasattr(cls, "__index__"):
        return operator.index(value)
    if hasattr(cls, "__float__"):
        try:
            return float(value)
        except OverflowError:  # a Fraction too large for a float: out of range either way
            return -math.inf if value < 0 else math.inf
        except ValueError:  # Decimal("sNaN"): not a number that can be sent
            return math.nan
    raise TypeError(f"{what} takes a number, got {cls.__name__}")


def is_finite(value: Number) -> bool:
    return value.__class__ is int or math.isfinite(value)
