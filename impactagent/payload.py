"""Turning a :class:`Snapshot` into ``ClientMetrics`` request bodies for Unleash.

The rules come from what real servers accept (see the project's protocol notes):

- dates are ISO-8601 UTC; ``bucket`` is always present, ``toggles`` may be empty;
- flags with ``yes == no == 0`` are left out (the server ignores them);
- every sample carries ``appName`` and ``environment`` labels; ``labels`` is never null;
- histogram buckets are cumulative and end with the *string* ``"+Inf"``;
- no NaN or infinity anywhere (``allow_nan=False``);
- no body is larger than ``max_bytes``: a big snapshot is split across several bodies that
  together carry every count exactly once.
"""

from __future__ import annotations

import json
import math
import platform
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

from ._version import __version__
from .snapshot import MetricDelta, Snapshot
from .statistics import DropCounter

#: The client specification version whose metrics contract impactagent implements.
SPEC_VERSION = "6.1.0"
SDK_NAME = "impactagent"
#: Edge batches at 95 kB; the server refuses bodies over 100 kB with 413.
DEFAULT_MAX_BYTES = 95_000


def environment_from_token(token: Optional[str], default: str) -> str:
    """Return the environment of a ``project:environment.secret`` token, else ``default``."""
    if token:
        head = token.split(".", 1)[0]
        if "." in token and ":" in head:
            environment = head.split(":", 1)[1]
            if environment:
                return environment
    return default


class Identity(NamedTuple):
    """Who is sending: the fields that identify an app instance in every body."""

    app_name: str
    environment: str = "default"
    instance_id: str = ""
    connection_id: str = ""
    sdk_version: str = f"{SDK_NAME}:{__version__}"
    platform_name: str = platform.python_implementation()
    platform_version: str = platform.python_version()
    spec_version: str = SPEC_VERSION

    @classmethod
    def create(cls, app_name: str, environment: str = "default",
               instance_id: Optional[str] = None) -> Identity:
        """An identity with a generated instance id (host-pid-random) and connection id."""
        if not isinstance(app_name, str) or not app_name.strip():
            raise ValueError(f"app_name must be a non-empty str, got {app_name!r}")
        if not isinstance(environment, str) or not environment.strip():
            raise ValueError(f"environment must be a non-empty str, got {environment!r}")
        if instance_id is None:
            instance_id = f"{platform.node() or 'host'}-{uuid.uuid4().hex[:8]}"
        return cls(app_name, environment, instance_id, str(uuid.uuid4()))


class Payload(NamedTuple):
    """One request body: the document and its exact bytes."""

    document: Dict[str, Any]
    body: bytes


def iso_utc(moment: datetime) -> str:
    """``2026-11-25T03:15:20.123Z``: ISO-8601 in UTC with milliseconds."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def encode(document: Dict[str, Any]) -> bytes:
    """Compact JSON, refusing NaN and infinities (which these servers cannot parse)."""
    return json.dumps(document, allow_nan=False, separators=(",", ":")).encode("ascii")


def _base_labels(identity: Identity) -> Dict[str, str]:
    return {"appName": identity.app_name, "environment": identity.environment}


def sample_json(metric: MetricDelta, sample: Any, base_labels: Dict[str, str]
                ) -> Optional[Dict[str, Any]]:
    """The wire form of one sample, or ``None`` if it cannot be sent (an overflowed sum)."""
    family = metric.family
    labels = dict(base_labels)
    labels.update(zip(family.label_names, sample.child.label_values))
    if family.kind == "histogram":
        if not math.isfinite(sample.sum):
            return None
        buckets, running = [], 0
        for le, n in zip(family.buckets, sample.counts):
            running += n
            buckets.append({"le": le, "count": running})
        buckets.append({"le": "+Inf", "count": running + sample.counts[-1]})
        return {"labels": labels, "count": sample.count, "sum": sample.sum, "buckets": buckets}
    return {"labels": labels, "value": sample.value}


def _header(snapshot: Snapshot, identity: Identity) -> Dict[str, Any]:
    return {
        "appName": identity.app_name,
        "instanceId": identity.instance_id,
        "connectionId": identity.connection_id,
        "environment": identity.environment,
        "sdkVersion": identity.sdk_version,
        "sdkType": "backend",
        "platformName": identity.platform_name,
        "platformVersion": identity.platform_version,
        "yggdrasilVersion": None,
        "specVersion": identity.spec_version,
        "bucket": {"start": iso_utc(snapshot.start), "stop": iso_utc(snapshot.stop),
                   "toggles": {}},
    }


def _toggle_json(delta: Any) -> Dict[str, Any]:
    return {"yes": delta.yes, "no": delta.no, "variants": dict(delta.variants)}


class _Item(NamedTuple):
    """One unit of packing: a flag's counts, or one sample of one metric."""

    size: int  # bytes it adds to a body, separator included
    flag: Optional[str]
    toggle: Optional[Dict[str, Any]]
    metric: Optional[MetricDelta]
    sample: Optional[Dict[str, Any]]


def _items(snapshot: Snapshot, base: Dict[str, str], drops: DropCounter) -> Iterator[_Item]:
    for name, delta in snapshot.toggles.items():
        if delta.yes or delta.no:
            toggle = _toggle_json(delta)
            size = len(json.dumps(name)) + 1 + len(encode(toggle)) + 1
            yield _Item(size, name, toggle, None, None)
    for metric in snapshot.metrics:
        for sample in metric.samples:
            wire = sample_json(metric, sample, base)
            if wire is None:
                drops.add("non_finite_sum", detail=f"histogram {metric.name!r}")
                continue
            yield _Item(len(encode(wire)) + 1, None, None, metric, wire)


def _metric_shell(metric: MetricDelta) -> Dict[str, Any]:
    family = metric.family
    return {"name": family.name, "help": family.help, "type": family.kind, "samples": []}


def build_payloads(
    snapshot: Snapshot,
    identity: Identity,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    drops: Optional[DropCounter] = None,
) -> List[Payload]:
    """Build the ``ClientMetrics`` bodies for a snapshot, none larger than ``max_bytes``.

    Always returns at least one body (an empty window still tells the server the instance
    is alive). Flags and samples are packed greedily in order; a metric whose samples do not
    fit in one body is continued, with the same name, help and type, in the next.
    """
    drops = drops if drops is not None else DropCounter()
    header = _header(snapshot, identity)
    # "impactMetrics": [] is added to every body that carries samples: count it up front.
    base_size = len(encode(header)) + len(',"impactMetrics":[]')
    base = _base_labels(identity)

    bodies: List[Tuple[Dict[str, Any], Dict[str, Dict[str, Any]]]] = []
    toggles: Dict[str, Any] = {}
    metrics: Dict[str, Dict[str, Any]] = {}
    used = base_size

    def close_body() -> None:
        nonlocal toggles, metrics, used
        if toggles or metrics or not bodies:
            bodies.append((toggles, metrics))
        toggles, metrics, used = {}, {}, base_size

    for item in _items(snapshot, base, drops):
        shell_size = 0
        if item.metric is not None and item.metric.name not in metrics:
            shell_size = len(encode(_metric_shell(item.metric))) + 1
        if base_size + shell_size + item.size > max_bytes:
            where = f"flag {item.flag!r}" if item.flag is not None else (
                f"{item.metric.family.kind} {item.metric.name!r}")  # type: ignore[union-attr]
            drops.add("oversize_item", detail=where)
            continue
        if used + shell_size + item.size > max_bytes:
            close_body()
            if item.metric is not None:
                shell_size = len(encode(_metric_shell(item.metric))) + 1
        used += shell_size + item.size
        if item.flag is not None:
            toggles[item.flag] = item.toggle
        else:
            assert item.metric is not None
            shell = metrics.get(item.metric.name)
            if shell is None:
                shell = metrics[item.metric.name] = _metric_shell(item.metric)
            shell["samples"].append(item.sample)
    close_body()

    payloads = []
    for body_toggles, body_metrics in bodies:
        document = dict(header)
        document["bucket"] = dict(header["bucket"], toggles=body_toggles)
        if body_metrics:
            document["impactMetrics"] = list(body_metrics.values())
        payloads.append(Payload(document, encode(document)))
    return payloads


def split_payload(payload: Payload) -> List[Payload]:
    """Split one body in two halves that together carry the same counts (for a 413)."""
    document = payload.document
    toggles = list(document["bucket"]["toggles"].items())
    samples = [(m, s) for m in document.get("impactMetrics", []) for s in m["samples"]]
    units: List[Tuple[str, Any, Any]] = [("flag", k, v) for k, v in toggles]
    units += [("sample", m, s) for m, s in samples]
    if len(units) < 2:
        return [payload]
    middle = len(units) // 2
    return [_assemble(document, part) for part in (units[:middle], units[middle:])]


def _assemble(template: Dict[str, Any], units: List[Tuple[str, Any, Any]]) -> Payload:
    document = {k: v for k, v in template.items() if k != "impactMetrics"}
    toggles = {key: value for kind, key, value in units if kind == "flag"}
    document["bucket"] = dict(template["bucket"], toggles=toggles)
    metrics: Dict[str, Dict[str, Any]] = {}
    for kind, metric, sample in units:
        if kind == "sample":
            shell = metrics.setdefault(
                metric["name"],
                {"name": metric["name"], "help": metric["help"], "type": metric["type"],
                 "samples": []},
            )
            shell["samples"].append(sample)
    if metrics:
        document["impactMetrics"] = list(metrics.values())
    return Payload(document, encode(document))
