"""The numbers an Unleash server takes, and turning what an app records into them.

The server checks every impact-metric number (a counter or gauge ``value``, a histogram's
``count``, ``sum`` and bucket counts) with Joi's ``number()``: a JSON number (``true`` is
refused), finite, and within JavaScript's safe range, ``|x| <= 2**53 - 1``, floats included
(a gauge at ``1e30`` is refused). One value that breaks these rules makes it discard the
*whole* ``impactMetrics`` array of a body while still answering 202, the unrelated metrics
with it. So every value is settled when it is recorded, never at send time:

- ``int`` and ``float`` are taken as they are: the hot path checks the exact class and
  nothing else, and only other types pay for :func:`to_number`;
- other numbers are converted: integer-like ones (``__index__``: numpy integers, ``IntEnum``)
  to ``int``, the rest with ``__float__`` (``Decimal``, ``Fraction``, numpy floats) to
  ``float``;
- ``bool`` (and numpy's bool) is refused with a ``TypeError``: ``True`` is no measurement,
  and ``json`` would write it as ``true``;
- anything else is refused with a ``TypeError`` that names the metric.

What is a number but out of range is the caller's to decide: a gauge drops and counts a
value beyond :data:`MAX_SAFE`, a histogram an observation that would take its sum there,
and a counter refuses a single increment above it (see each class).

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

#: The largest magnitude the server accepts: JavaScript's ``Number.MAX_SAFE_INTEGER``.
MAX_SAFE = 2**53 - 1
#: The same bound as a float (exact: 2**53 - 1 needs 53 bits, a double has them).
MAX_SAFE_FLOAT = float(MAX_SAFE)

Number = Union[int, float]


def to_number(value: Any, what: str) -> Number:
    """``value`` as an exact ``int`` or ``float``, or a ``TypeError`` naming ``what``.

    The slow path of every recording method: called only when ``value`` is not exactly an
    ``int`` or a ``float``. A number too large for a float becomes an infinity (the caller
    drops it as it drops any other).
    """
    cls = value.__class__
    if cls is int or cls is float:
        exact: Number = value  # its class says so
        return exact
    if isinstance(value, bool) or (cls.__module__ == "numpy" and cls.__name__ in ("bool_", "bool")):
        raise TypeError(f"{what} takes a number, got a bool ({value!r}): record 1 or 0")
    if hasattr(cls, "__index__"):
        return operator.index(value)  # an exact int since Python 3.10
    if hasattr(cls, "__float__"):
        try:
            return float(value)
        except OverflowError:  # a Fraction too large for a float: out of range either way
            return -math.inf if value < 0 else math.inf
        except ValueError:  # Decimal("sNaN"): not a number that can be sent
            return math.nan
    raise TypeError(f"{what} takes a number, got {cls.__name__}")


def is_finite(value: Number) -> bool:
    """True unless ``value`` is a NaN or an infinity (any ``int`` is finite)."""
    return value.__class__ is int or math.isfinite(value)
