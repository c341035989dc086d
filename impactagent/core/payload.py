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

import functools
import json
import math
import platform
import uuid
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple

from .._version import __version__
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


def iso_utc(moment: datetime) -> str:
    """``2026-11-25T03:15:20.123Z``: ISO-8601 in UTC with milliseconds."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# One encoder for every call: json.dumps() with options builds a new one each time, which
# was a sixth of the cost of building bodies for 10,000 series.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def encode(document: Dict[str, Any]) -> bytes:
    """Compact JSON, refusing NaN and infinities (which these servers cannot parse)."""
    return _ENCODER.encode(document).encode("ascii")


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


class Unit(NamedTuple):
    """One indivisible piece of a body: a flag's counts, or one sample of one metric.

    ``delta`` is what the unit carries in recorder terms (a ``ToggleDelta`` or a sample
    delta) so a body that fails can be merged back; it is ``None`` for bodies read back
    from the spool, which are replayed as bytes.
    """

    size: int  # bytes it adds to a body, separator included
    flag: Optional[str]  # the flag name, or None for a metric sample
    wire: Dict[str, Any]  # the toggle or sample as sent
    metric: Optional[Tuple[str, str, str]]  # (name, help, type) of a sample's metric
    delta: Any = None
    #: Its JSON (``"name":{...}`` for a flag): encoded once, to size it, and reused as is
    #: in the body, which is joined from these pieces rather than encoded a second time.
    encoded: bytes = b""


def _units(snapshot: Snapshot, base: Dict[str, str], drops: DropCounter) -> Iterator[Unit]:
    for name, delta in snapshot.toggles.items():
        if delta.yes or delta.no:
            yield _flag_unit(name, _toggle_json(delta), delta)
    for metric in snapshot.metrics:
        family = metric.family
        shell = (family.name, family.help, family.kind)
        for sample in metric.samples:
            wire = sample_json(metric, sample, base)
            if wire is None:
                drops.add("non_finite_sum", sample.count, detail=f"histogram {metric.name!r}")
                continue
            yield _sample_unit(wire, shell, sample)


def _sample_unit(wire: Dict[str, Any], shell: Tuple[str, str, str], delta: Any = None) -> Unit:
    encoded = encode(wire)
    return Unit(len(encoded) + 1, None, wire, shell, delta, encoded)


def _flag_unit(name: str, toggle: Dict[str, Any], delta: Any = None) -> Unit:
    encoded = json.dumps(name).encode("ascii") + b":" + encode(toggle)
    return Unit(len(encoded) + 1, name, toggle, None, delta, encoded)


@functools.lru_cache(maxsize=1024)
def _shell_json(metric: Tuple[str, str, str]) -> bytes:
    """``{"name":..,"help":..,"type":..,"samples":[`` for a metric (its samples follow)."""
    name, help_text, kind = metric
    return encode({"name": name, "help": help_text, "type": kind, "samples": []})[:-2]


def _shell_size(metric: Tuple[str, str, str]) -> int:
    return len(_shell_json(metric)) + len(b"]},")


class Payload(NamedTuple):
    """One request body: the document, its exact bytes, and the units it carries."""

    document: Dict[str, Any]
    body: bytes
    units: Tuple[Unit, ...] = ()
    window: Optional[Tuple[datetime, datetime]] = None

    def part(self) -> Optional[Snapshot]:
        """The slice of the snapshot this body carries, to restore if it is not delivered.

        ``None`` for a body without recorder deltas (one replayed from the spool).
        """
        if self.window is None or any(u.delta is None for u in self.units):
            return None
        toggles = {u.flag: u.delta for u in self.units if u.flag is not None}
        samples: Dict[str, List[Any]] = {}
        families: Dict[str, Any] = {}
        for unit in self.units:
            if unit.flag is None:
                family = unit.delta.child.family
                families[family.name] = family
                samples.setdefault(family.name, []).append(unit.delta)
        metrics = tuple(MetricDelta(families[n], tuple(s)) for n, s in samples.items())
        return Snapshot(self.window[0], self.window[1], toggles, metrics)


def _assemble(header: Dict[str, Any], units: List[Unit],
              window: Optional[Tuple[datetime, datetime]]) -> Payload:
    document = {k: v for k, v in header.items() if k != "impactMetrics"}
    document["bucket"] = dict(header["bucket"],
                              toggles={u.flag: u.wire for u in units if u.flag is not None})
    metrics: Dict[str, Dict[str, Any]] = {}
    pieces: Dict[Tuple[str, str, str], List[bytes]] = {}  # each metric's encoded samples
    for unit in units:
        if unit.metric is not None:
            name, help_text, kind = unit.metric
            shell = metrics.get(name)
            if shell is None:
                shell = metrics[name] = {"name": name, "help": help_text, "type": kind,
                                         "samples": []}
                pieces[unit.metric] = []
            shell["samples"].append(unit.wire)
            pieces[unit.metric].append(unit.encoded)
    if metrics:
        document["impactMetrics"] = list(metrics.values())
    return Payload(document, _join(document, units, pieces), tuple(units), window)


#: How an encoded header ends when its bucket (the last key) has no toggles yet.
_EMPTY_TOGGLES_END = b'"toggles":{}}}'


def _join(document: Dict[str, Any], units: List[Unit],
          pieces: Dict[Tuple[str, str, str], List[bytes]]) -> bytes:
    """The body's bytes, joined from the units' own encodings: byte for byte what
    ``encode(document)`` gives, without encoding every sample a second time."""
    head = {k: v for k, v in document.items() if k != "impactMetrics"}
    head["bucket"] = dict(document["bucket"], toggles={})
    head_json = encode(head)
    if not head_json.endswith(_EMPTY_TOGGLES_END):  # a document with another key order
        return encode(document)
    parts = [head_json[: -len(b"}}}")], b",".join(u.encoded for u in units if u.flag is not None),
             b"}}"]
    if pieces:
        parts.append(b',"impactMetrics":[')
        parts.append(b",".join(_shell_json(shell) + b",".join(encoded) + b"]}"
                               for shell, encoded in pieces.items()))
        parts.append(b"]")
    parts.append(b"}")
    return b"".join(parts)


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
    window = (snapshot.start, snapshot.stop)
    return _pack(header, _units(snapshot, _base_labels(identity), drops), max_bytes, drops,
                 window)


def _pack(header: Dict[str, Any], units: Iterable[Unit], max_bytes: int, drops: DropCounter,
          window: Optional[Tuple[datetime, datetime]]) -> List[Payload]:
    # "impactMetrics": [] may be added to any body: count it up front.
    base_size = len(encode(header)) + len(',"impactMetrics":[]')
    bodies: List[List[Unit]] = []
    current: List[Unit] = []
    shells: set = set()
    used = base_size
    for unit in units:
        shell = _shell_size(unit.metric) if unit.metric is not None else 0
        if base_size + shell + unit.size > max_bytes:
            where = f"flag {unit.flag!r}" if unit.metric is None else (
                f"{unit.metric[2]} {unit.metric[0]!r}")
            drops.add("oversize_item", _unit_events(unit), detail=where[:200])
            continue
        if unit.metric is not None and unit.metric[0] in shells:
            shell = 0
        if used + shell + unit.size > max_bytes:
            bodies.append(current)
            current, shells, used = [], set(), base_size
            shell = _shell_size(unit.metric) if unit.metric is not None else 0
        current.append(unit)
        used += shell + unit.size
        if unit.metric is not None:
            shells.add(unit.metric[0])
    if current or not bodies:
        bodies.append(current)
    return [_assemble(header, body, window) for body in bodies]


def payload_from_document(document: Dict[str, Any]) -> Payload:
    """A :class:`Payload` for a document read back (from the spool), splittable as usual."""
    units = [_flag_unit(name, toggle) for name, toggle in
             document.get("bucket", {}).get("toggles", {}).items()]
    for metric in document.get("impactMetrics") or []:
        shell = (metric["name"], metric["help"], metric["type"])
        units += [_sample_unit(sample, shell) for sample in metric["samples"]]
    return Payload(document, encode(document), tuple(units))


def split_payload(payload: Payload) -> List[Payload]:
    """Split one body in two halves that together carry the same counts (for a 413).

    Returns ``[payload]`` unchanged when it holds a single unit and cannot be split.
    """
    units = list(payload.units)
    if len(units) < 2:
        return [payload]
    middle = len(units) // 2
    return [_assemble(payload.document, half, payload.window)
            for half in (units[:middle], units[middle:])]


def count_events(document: Dict[str, Any]) -> int:
    """The recorded events a body carries: flag evaluations, counter increments,
    histogram observations and gauge values (one per sample)."""
    events = sum(t["yes"] + t["no"] for t in document.get("bucket", {}).get("toggles", {})
                 .values())
    for metric in document.get("impactMetrics") or []:
        for sample in metric["samples"]:
            events += _sample_events(metric["type"], sample)
    return events


def _sample_events(kind: str, sample: Dict[str, Any]) -> int:
    if kind == "counter":
        return int(sample["value"])
    if kind == "histogram":
        return int(sample["count"])
    return 1


def _unit_events(unit: Unit) -> int:
    """The recorded events one unit carries: what is lost when it is dropped."""
    if unit.metric is None:
        return int(unit.wire["yes"]) + int(unit.wire["no"])
    return _sample_events(unit.metric[2], unit.wire)
