"""Is this ``ClientMetrics`` body one a real Unleash server would take, and take whole?

Three outcomes matter, because a real server answers 202 to more than it stores:

- ``rejected``: the server answers 400 (the body is not JSON, has ``NaN`` or ``Infinity``
  in it, or breaks the schema outside ``impactMetrics``: no ``appName``, a bad bucket);
- ``discarded``: the server answers 202 but throws away the *whole* ``impactMetrics`` array,
  because one metric in it is invalid (``"labels": null``, an unknown type, a string ``le``
  other than ``"+Inf"``, a negative or fractional counter);
- ``ignored``: the server answers 202 and skips one part (a flag with ``yes == no == 0``).

The schema is the seed's OpenAPI ``ClientMetrics`` (``schemas/client-metrics.schema.json``),
amended in one place: a histogram bucket's ``le`` is a number or the string ``"+Inf"``.

>>> [p.message for p in check_body(b'{"appName": "shop", "bucket": null, "x": NaN}')]
['not JSON: NaN is not a JSON value (servers answer 400)']
>>> check_body(b'{"appName": "shop", "bucket": {"start": "2026-11-25T10:00:00Z", '
...            b'"stop": "2026-11-25T10:01:00Z", "toggles": {}}}')
[]
>>> [(p.outcome, p.where) for p in check_body(b'{"appName": "shop"}')]
[('rejected', 'bucket')]
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Dict, List, Optional, Tuple

from ._numbers import MAX_SAFE

REJECTED = "rejected"
DISCARDED = "discarded"
IGNORED = "ignored"

_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|\+00:00)\Z")
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_TYPES = ("counter", "gauge", "histogram")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a body: what the server does about it, where, and what."""

    outcome: str  # REJECTED, DISCARDED or IGNORED
    where: str  # a JSON path such as "impactMetrics/0/samples/1/labels"
    message: str

    def __str__(self) -> str:
        return f"{self.outcome}: {self.where or '<body>'}: {self.message}"


def parse_body(raw: bytes) -> Tuple[Optional[Dict[str, Any]], List[Problem]]:
    """The JSON document in ``raw``, or the reason it is not one a server can read."""

    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON value")

    try:
        document = json.loads(raw, parse_constant=refuse_constant)
    except (ValueError, UnicodeDecodeError) as error:
        return None, [Problem(REJECTED, "", f"not JSON: {error} (servers answer 400)")]
    if not isinstance(document, dict):
        return None, [Problem(REJECTED, "", "the body is not a JSON object")]
    return document, []


def check_body(raw: bytes) -> List[Problem]:
    """Every problem with the request body ``raw``; an empty list means it is stored whole."""
    document, problems = parse_body(raw)
    return problems if document is None else check_document(document)


def check_document(document: Dict[str, Any]) -> List[Problem]:
    """Every problem with a parsed ``ClientMetrics`` document."""
    problems = []
    for error in _validator().iter_errors(document):
        path = "/".join(map(str, error.absolute_path))
        outcome = DISCARDED if path.startswith("impactMetrics/") else REJECTED
        problems.append(Problem(outcome, path, error.message))
    problems += _bucket_problems(document.get("bucket"))
    metrics = document.get("impactMetrics")
    if isinstance(metrics, list):
        for index, metric in enumerate(metrics):
            if isinstance(metric, dict):
                problems += _metric_problems(f"impactMetrics/{index}", metric)
    return problems


def outcome_of(problems: List[Problem]) -> str:
    """What a real server does with a body with these problems: the worst outcome, or
    ``"stored"``."""
    for outcome in (REJECTED, DISCARDED, IGNORED):
        if any(p.outcome == outcome for p in problems):
            return outcome
    return "stored"


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    text = resources.files("impactagent").joinpath("schemas/client-metrics.schema.json")
    schema = json.loads(text.read_text(encoding="utf-8"))
    cls = jsonschema.Draft202012Validator
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _bucket_problems(bucket: Any) -> List[Problem]:
    if bucket is None:
        return [Problem(REJECTED, "bucket", "missing: servers before 8.0 answer 400; send "
                        "one with toggles {} when there are no flag counts")]
    if not isinstance(bucket, dict):
        return []  # the schema said so already
    problems = []
    for key in ("start", "stop"):
        value = bucket.get(key)
        if isinstance(value, str) and not _ISO_UTC.match(value):
            problems.append(Problem(REJECTED, f"bucket/{key}",
                                    f"{value!r} is not an ISO-8601 UTC date-time"))
    toggles = bucket.get("toggles")
    for name, toggle in (toggles.items() if isinstance(toggles, dict) else ()):
        if isinstance(toggle, dict) and toggle.get("yes") == 0 and toggle.get("no") == 0:
            problems.append(Problem(IGNORED, f"bucket/toggles/{name}",
                                    "yes == no == 0: the server ignores the flag, variants "
                                    "included"))
    return problems


def _metric_problems(where: str, metric: Dict[str, Any]) -> List[Problem]:
    problems = []

    def discarded(path: str, message: str) -> None:
        problems.append(Problem(DISCARDED, path, message + " (the server drops the whole "
                                "impactMetrics array)"))

    name = metric.get("name")
    if isinstance(name, str) and not _NAME.match(name):
        discarded(f"{where}/name", f"{name!r} is not [a-zA-Z_][a-zA-Z0-9_]*")
    kind = metric.get("type")
    if kind not in _TYPES:
        discarded(f"{where}/type", f"{kind!r} is not one of {', '.join(_TYPES)}")
    samples = metric.get("samples")
    for index, sample in enumerate(samples if isinstance(samples, list) else ()):
        path = f"{where}/samples/{index}"
        if not isinstance(sample, dict):
            continue
        labels = sample.get("labels")
        if labels is None:
            discarded(f"{path}/labels", "labels is null or missing; send {} instead")
        elif isinstance(labels, dict) and not {"appName", "environment"} <= set(labels):
            problems.append(Problem(IGNORED, f"{path}/labels", "no appName or environment "
                                    "label: the series is not attributed to the app"))
        for field, number in _numbers_of(sample):
            if (isinstance(number, (int, float)) and not isinstance(number, bool)
                    and not -MAX_SAFE <= number <= MAX_SAFE):
                discarded(f"{path}/{field}", f"{number!r} is not a safe number "
                          "(|x| <= 2**53 - 1): the server refuses it")
        if kind == "counter":
            value = sample.get("value")
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                discarded(f"{path}/value", f"counter value {value!r} is not an integer >= 0")
        elif kind == "histogram":
            for message in _histogram_problems(sample):
                discarded(path, message)
    return problems


def _numbers_of(sample: Dict[str, Any]) -> List[Tuple[str, Any]]:
    """Every number of a sample that the server checks with Joi's ``number()``."""
    found: List[Tuple[str, Any]] = [(field, sample[field]) for field in ("value", "count", "sum")
                                    if field in sample]
    buckets = sample.get("buckets")
    for index, bucket in enumerate(buckets if isinstance(buckets, list) else ()):
        if isinstance(bucket, dict):
            found += [(f"buckets/{index}/{field}", bucket[field]) for field in ("le", "count")
                      if field in bucket and bucket[field] != "+Inf"]
    return found


def _histogram_problems(sample: Dict[str, Any]) -> List[str]:
    buckets = sample.get("buckets")
    if not isinstance(buckets, list) or not all(isinstance(b, dict) for b in buckets):
        return []  # the schema said so already
    problems = []
    if not buckets or buckets[-1].get("le") != "+Inf":
        problems.append("buckets do not end with the string '+Inf'")
    bounds = [b.get("le") for b in buckets[:-1]]
    if any(isinstance(le, str) for le in bounds):
        problems.append("a string le other than the last '+Inf'")
    elif bounds != sorted(bounds):
        problems.append("le values are not increasing")
    counts = [b.get("count") for b in buckets]
    if all(isinstance(c, int) for c in counts):
        if counts != sorted(counts):
            problems.append("bucket counts are not cumulative")
        if buckets and buckets[-1].get("le") == "+Inf" and counts[-1] != sample.get("count"):
            problems.append("the '+Inf' count differs from the sample's count")
    total = sample.get("sum")
    if isinstance(total, float) and not math.isfinite(total):
        problems.append("sum is not finite")
    return problems
