"""Rules shared by the agent's and the receiver's Prometheus expositions: the names a family
takes (two that overlap make parsers refuse the text), and text that encodes as UTF-8.

>>> claimed_names("checkouts_total", "counter")
['checkouts_total', 'checkouts', 'checkouts_total', 'checkouts_created']
>>> scrub("a\\ud800b")
'a\\ufffdb'
"""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")


def counter_base(name: str) -> str:
    """The OpenMetrics family name of a counter: without ``_total`` (never empty)."""
    return name[:-6] if name.endswith("_total") and len(name) > 6 else name


def claimed_names(name: str, kind: str) -> list[str]:
    """The family and sample names a family of type ``kind`` takes, in either format."""
    if kind == "counter":
        base = counter_base(name)
        return [name, base, base + "_total", base + "_created"]
    if kind == "histogram":
        return [name] + [name + suffix for suffix in ("_bucket", "_count", "_sum", "_created")]
    return [name]


def scrub(text: str) -> str:
    """``text`` with lone surrogates as U+FFFD, as Node writes them."""
    return _SURROGATE.sub("\ufffd", text)
