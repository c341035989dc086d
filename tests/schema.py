"""A validator for ``ClientMetrics`` built from the seed's OpenAPI document, plus the checks
for what that schema allows but real Unleash servers reject or silently drop.

The schema is amended in exactly one place, as the protocol notes require: ``Bucket.le``
accepts a number or the string ``"+Inf"`` (JSON has no infinity; every real implementation
takes the string there).
"""

from __future__ import annotations

import copy
import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict

import jsonschema
import yaml

OPENAPI = Path(__file__).parent / "data" / "client-metrics.openapi.yaml"
_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z\Z")


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (v.replace("#/components/schemas/", "#/$defs/") if k == "$ref" else
                    _rewrite_refs(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


@lru_cache(maxsize=1)
def client_metrics_validator() -> jsonschema.protocols.Validator:
    """A Draft 2020-12 validator for ``ClientMetrics`` with date-time format checks."""
    schemas = copy.deepcopy(yaml.safe_load(OPENAPI.read_text())["components"]["schemas"])
    # The one amendment: le is a number, or the string "+Inf".
    schemas["Bucket"]["properties"]["le"] = {"oneOf": [{"type": "number"}, {"const": "+Inf"}]}
    schema = {"$ref": "#/$defs/ClientMetrics", "$defs": _rewrite_refs(schemas)}
    cls = jsonschema.Draft202012Validator
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def validate_client_metrics(document: Dict[str, Any]) -> None:
    """Raise ``AssertionError`` naming every schema violation and every server pitfall."""
    errors = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
              for e in client_metrics_validator().iter_errors(document)]
    errors += strict_problems(document)
    if errors:
        raise AssertionError("invalid ClientMetrics:\n  " + "\n  ".join(errors))


def strict_problems(document: Dict[str, Any]) -> list:
    """What the schema allows but servers reject or discard (one bad item drops them all)."""
    problems = []
    raw = json.dumps(document)  # json.dumps writes NaN/Infinity if any slipped in
    if "NaN" in raw or "Infinity" in raw:
        problems.append("NaN or Infinity in the body")
    bucket = document.get("bucket")
    if bucket is None:
        problems.append("bucket missing (servers before 8.0 answer 400)")
    else:
        for key in ("start", "stop"):
            if not _ISO_UTC.match(bucket.get(key, "")):
                problems.append(f"bucket.{key} {bucket.get(key)!r} is not ISO-8601 UTC")
        for name, toggle in bucket.get("toggles", {}).items():
            if toggle["yes"] == 0 and toggle["no"] == 0:
                problems.append(f"flag {name!r} has yes == no == 0 (ignored by the server)")
    for metric in document.get("impactMetrics") or []:
        where = f"metric {metric.get('name')!r}"
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", metric.get("name", "")):
            problems.append(f"{where}: name the server would rewrite")
        for sample in metric.get("samples", []):
            labels = sample.get("labels")
            if labels is None:
                problems.append(f"{where}: labels is null or missing")
                continue
            if "appName" not in labels or "environment" not in labels:
                problems.append(f"{where}: sample without appName/environment labels")
            if metric["type"] == "counter":
                value = sample["value"]
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    problems.append(f"{where}: counter value {value!r} is not an int >= 0")
            elif metric["type"] == "gauge":
                if not math.isfinite(sample["value"]):
                    problems.append(f"{where}: gauge value not finite")
            else:
                problems += _histogram_problems(where, sample)
    return problems


def _histogram_problems(where: str, sample: Dict[str, Any]) -> list:
    problems = []
    buckets = sample["buckets"]
    if not buckets or buckets[-1]["le"] != "+Inf":
        problems.append(f"{where}: buckets do not end with the string '+Inf'")
    if any(isinstance(b["le"], str) for b in buckets[:-1]):
        problems.append(f"{where}: a string le other than the last '+Inf'")
    counts = [b["count"] for b in buckets]
    if counts != sorted(counts):
        problems.append(f"{where}: buckets are not cumulative")
    if buckets and buckets[-1]["count"] != sample["count"]:
        problems.append(f"{where}: '+Inf' count differs from the sample count")
    les = [b["le"] for b in buckets[:-1]]
    if les != sorted(les):
        problems.append(f"{where}: le values not increasing")
    return problems
