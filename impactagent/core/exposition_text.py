"""Rules shared by the two Prometheus expositions (the agent's scrape and the receiver's
``/metrics``): which names a family takes, and text that always encodes as UTF-8.

A family takes more names than its own in OpenMetrics: a counter ``x`` (or ``x_total``) is
the family ``x`` with samples ``x_total`` (and ``x_created``), a histogram ``h`` has
``h_bucket``, ``h_count``, ``h_sum`` and ``h_created``. Two families whose names overlap make
a text that parsers refuse ("Clashing name"), so an exposition shows only the first.

>>> claimed_names("checkouts_total", "counter")
['checkouts_total', 'checkouts', 'checkouts_total', 'checkouts_created']
>>> scrub("a\\ud800b")
'a\\ufffdb'
"""

from __future__ import annotations

import re
from typing import List

_SURROGATE = re.compile("[\ud800-\udfff]")


def counter_base(name: str) -> str:
    """The OpenMetrics family name of a counter: without ``_total`` (never empty)."""
    return name[:-6] if name.endswith("_total") and len(name) > 6 else name


def claimed_names(name: str, kind: str) -> List[str]:
    """The family and sample names a family of type ``kind`` takes, in either format."""
    if kind == "counter":
        base = counter_base(name)
        return [name, base, base + "_total", base + "_created"]
    if kind == "histogram":
        return [name] + [name + suffix for suffix in ("_bucket", "_count", "_sum", "_created")]
    return [name]


def scrub(text: str) -> str:
    """``text`` with lone UTF-16 surrogates (a JSON ``"\\ud800"``, a Python ``"\\udc80"`` from
    ``surrogateescape``) as U+FFFD, as Node writes them: else encoding the whole scrape as
    UTF-8 fails on one label value."""
    return _SURROGATE.sub("\ufffd", text)
