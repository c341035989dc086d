"""Turning a :class:`Snapshot` into ``ClientMetrics`` request bodies that real servers accept
(``docs/protocol.md``), none over ``max_bytes``: a big snapshot is split across bodies that
together carry every count once."""

from __future__ import annotations

import json
import math
import platform
import uuid
from array import array
from datetime import datetime, timezone
from itertools import accumulate
from json.encoder import encode_basestring_ascii as _json_string  # what _ENCODER uses
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

from .._version import __version__
from ._numbers import MAX_SAFE
from .flags import ToggleDelta
from .server_limits import MAX_VARIANT_COUNT
from .snapshot import MetricDelta, Snapshot
from .statistics import DropCounter, Drops

#: The client specification version whose metrics contract impactagent implements.
SPEC_VERSION = "6.1.0"
SDK_NAME = "impactagent"
#: Edge batches at 95 kB; the server refuses bodies over 100 kB with 413.
DEFAULT_MAX_BYTES = 95_000


def environment_from_token(token: str | None, default: str) -> str:
    """The environment of a ``project:environment.secret`` token, else ``default``."""
    head, dot, _ = (token or "").partition(".")
    return (head.partition(":")[2] if dot else "") or default


class Identity(NamedTuple):
    """The fields that identify an app instance in every body."""

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
               instance_id: str | None = None) -> Identity:
        """An identity with a generated instance id and connection id."""
        for field, value in (("app_name", app_name), ("environment", environment)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{field} must be a non-empty str, got {value!r}")
        if instance_id is None:
            instance_id = f"{platform.node() or 'host'}-{uuid.uuid4().hex[:8]}"
        return cls(app_name, environment, instance_id, str(uuid.uuid4()))

    def fields(self) -> dict[str, Any]:
        """The fields naming the sender in every body, registration's too."""
        return {"appName": self.app_name, "instanceId": self.instance_id,
                "connectionId": self.connection_id, "environment": self.environment,
                "sdkVersion": self.sdk_version, "platformName": self.platform_name,
                "platformVersion": self.platform_version, "yggdrasilVersion": None,
                "specVersion": self.spec_version}


def iso_utc(moment: datetime) -> str:
    """``2026-11-25T03:15:20.123Z``: ISO-8601 in UTC with milliseconds."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def milliseconds(seconds: float) -> int:
    """An interval as the protocol says it (the ``unleash-interval`` header, a registration)."""
    return int(seconds * 1000)


# One encoder: json.dumps() with options builds a new one each call.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def encode(document: dict[str, Any]) -> bytes:
    """Compact JSON, refusing NaN and infinities."""
    return _ENCODER.encode(document).encode("ascii")


def _samples(metric: MetricDelta, base: dict[str, str], drops: Drops
             ) -> Iterator[tuple[int, bytes, int]]:
    """``(index, JSON, events)`` of each sample the server takes, written directly (no dict
    per sample); a histogram whose sum or count it would refuse is counted as dropped."""
    family = metric.family
    table = family.series_table()
    head = _ENCODER.encode({"labels": base})[:-2]  # '{"labels":{"appName":..,"environment":..'
    names = [f",{_json_string(name)}:" for name in family.label_names]
    sole = names[0] if len(names) == 1 else None
    kind = family.kind
    width = metric.width
    les = [f'{{"le":{le!r},"count":' for le in family.buckets]
    numbers: Iterable[Any] = metric.numbers_as_taken()
    for index, (position, value) in enumerate(zip(metric.indexes, numbers)):
        values = table[position].label_values
        if sole is not None:
            labels = sole + _json_string(values[0])
        else:
            labels = "".join([name + _json_string(label) for name, label in zip(names, values)])
        if kind != "histogram":
            encoded = f'{head}{labels}}},"value":{value!r}}}'
            yield index, encoded.encode("ascii"), value if kind == "counter" else 1
            continue
        counts = metric.counts[index * width:(index + 1) * width]
        total = sum(counts)
        if not math.isfinite(value):
            drops.add("non_finite_sum", total, detail=f"histogram {family.name!r}")
        elif total > MAX_SAFE:
            drops.add("unsafe_count", total, detail=f"histogram {family.name!r}")
        else:
            buckets = [f"{le}{n}}}" for le, n in zip(les, accumulate(counts))]
            encoded = (f'{head}{labels}}},"count":{total},"sum":{value!r},"buckets":['
                       f'{",".join(buckets)},{{"le":"+Inf","count":{total}}}]}}')
            yield index, encoded.encode("ascii"), total


#: Each metric's deltas, and the indexes of the samples a body carries.
Picked = tuple[tuple[MetricDelta, Sequence[int]], ...]


class Payload:
    """One request body: its bytes, its units (each flag's counts and each sample), their
    events, and the part of the snapshot to give back if it is not delivered."""

    __slots__ = ("_picked", "_toggles", "_window", "body", "events", "units")

    def __init__(self, body: bytes, units: int, events: int,
                 window: tuple[datetime, datetime] | None = None,
                 toggles: dict[str, ToggleDelta] | None = None, picked: Picked = ()) -> None:
        self.body = body
        self.units = units
        self.events = events
        self._window = window
        self._toggles = toggles if toggles is not None else {}
        self._picked = picked

    @property
    def document(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.body)
        return decoded

    def part(self) -> Snapshot | None:
        """The slice of the snapshot this body carries, or ``None`` (a spooled body)."""
        if self._window is None:
            return None
        return Snapshot(*self._window, dict(self._toggles),
                        tuple(metric.subset(indexes) for metric, indexes in self._picked))


class _Bodies:
    """Packs units greedily, in order, into bodies of at most ``max_bytes``, written as they
    come: flags, then each metric's samples after its shell (name, help, type). The size kept
    counts a separator per unit and a whole shell per metric, so a body never outgrows its
    bound; a unit too big for any body is dropped (``oversize_item``)."""

    def __init__(self, header: dict[str, Any], snapshot: Snapshot, max_bytes: int,
                 drops: Drops) -> None:
        self.head = encode(header)[:-3]
        self.base = len(encode(header)) + len(',"impactMetrics":[]')
        self.max_bytes = max_bytes
        self.drops = drops
        self.window = snapshot.start, snapshot.stop
        self.payloads: list[Payload] = []
        self._open()

    def _open(self) -> None:
        self.data = bytearray(self.head)
        self.used = self.base
        self.units = self.events = 0
        self.toggles: dict[str, ToggleDelta] = {}
        self.picked: list[tuple[MetricDelta, Any]] = []  # each metric's sample indexes
        self.names: set[str] = set()  # the metrics with a shell in this body
        self.shell: bytes | None = None  # the shell whose samples are being written

    def close(self) -> None:
        self.data += b"]}]}" if self.shell is not None else b"}}}"
        self.payloads.append(Payload(bytes(self.data), self.units, self.events, self.window,
                                     self.toggles, tuple(self.picked)))

    def _fits(self, size: int, weight: int, name: str | None, what: str, events: int) -> bool:
        """Whether a unit goes in, here or in a new body; ``weight``: its metric's shell."""
        if self.base + weight + size > self.max_bytes:
            self.drops.add("oversize_item", events, detail=what[:200])
            return False
        shell = 0 if name in self.names else weight
        if self.used + shell + size > self.max_bytes:
            self.close()
            self._open()
            shell = weight
        self.used += shell + size
        return True

    def flag(self, name: str, encoded: bytes, events: int, delta: ToggleDelta) -> None:
        if self._fits(len(encoded) + 1, 0, None, f"flag {name!r}", events):
            if self.toggles:
                self.data += b","
            self.data += encoded
            self.units += 1
            self.events += events
            self.toggles[name] = delta

    def metric(self, metric: MetricDelta, samples: Iterator[tuple[int, bytes, int]]) -> None:
        family = metric.family
        name = family.name
        shell = encode({"name": name, "help": family.help, "type": family.kind, "samples": []})[:-2]
        weight = len(shell) + len(b"]},")
        what = f"{family.kind} {name!r}"
        data = self.data
        indexes: Any = None  # this metric's sample indexes in the current body
        for index, encoded, events in samples:
            size = len(encoded) + 1
            if indexes is not None and self.used + size <= self.max_bytes:
                self.used += size
                data += b","
            elif not self._fits(size, weight, name, what, events):
                continue
            else:
                data = self.data
                if self.shell != shell:  # the first of its metric in this body
                    data += b'}},"impactMetrics":[' if self.shell is None else b"]},"
                    data += shell
                    self.shell = shell
                    self.names.add(name)
                else:
                    data += b","
                indexes = array("q")
                self.picked.append((metric, indexes))
            data += encoded
            self.units += 1
            self.events += events
            indexes.append(index)


def _flags_to_send(snapshot: Snapshot, drops: Drops) -> Iterator[tuple[str, ToggleDelta]]:
    """The snapshot's flags a server takes; one it would lose the window for is dropped."""
    for name, delta in snapshot.toggles.items():
        if not (delta.yes or delta.no):  # the server ignores it
            continue
        if any(n > MAX_VARIANT_COUNT for n in delta.variants.values()):
            # Never from the recorder (flags.fit_hour); nothing to give the rest back to.
            drops.add("variant_count_limit", delta.yes + delta.no, detail=f"flag {name!r}")
            continue
        yield name, delta


def build_payloads(snapshot: Snapshot, identity: Identity, *, max_bytes: int = DEFAULT_MAX_BYTES,
                   drops: Drops | None = None) -> list[Payload]:
    """The ``ClientMetrics`` bodies for a snapshot, none larger than ``max_bytes``; at least
    one (an empty window still tells the server the instance is alive)."""
    drops = drops if drops is not None else DropCounter()
    header = {**identity.fields(), "sdkType": "backend",
              "bucket": {"start": iso_utc(snapshot.start), "stop": iso_utc(snapshot.stop),
                         "toggles": {}}}
    bodies = _Bodies(header, snapshot, max_bytes, drops)
    for name, delta in _flags_to_send(snapshot, drops):
        toggle = {"yes": delta.yes, "no": delta.no, "variants": dict(delta.variants)}
        encoded = json.dumps(name).encode("ascii") + b":" + encode(toggle)
        bodies.flag(name, encoded, delta.yes + delta.no, delta)
    base = {"appName": identity.app_name, "environment": identity.environment}
    # One metric's deltas side by side (a snapshot joined from two has each twice).
    order: dict[str, int] = {}
    for metric in snapshot.metrics:
        order.setdefault(metric.family.name, len(order))
    for metric in sorted(snapshot.metrics, key=lambda metric: order[metric.family.name]):
        bodies.metric(metric, _samples(metric, base, drops))
    if bodies.units or not bodies.payloads:
        bodies.close()
    return bodies.payloads


#: ``(flag, toggle, None, events)`` or ``(None, sample, (name, help, type), events)``.
_Unit = tuple[str | None, dict[str, Any], tuple[str, str, str] | None, int]


def _units_of(document: dict[str, Any]) -> list[_Unit]:
    units: list[_Unit] = [(name, toggle, None, int(toggle["yes"]) + int(toggle["no"]))
                          for name, toggle in document.get("bucket", {}).get("toggles", {})
                          .items()]
    for metric in document.get("impactMetrics") or []:
        shell = (metric["name"], metric["help"], metric["type"])
        units.extend((None, sample, shell, _sample_events(metric["type"], sample))
                     for sample in metric["samples"])
    return units


def payload_from_document(document: dict[str, Any]) -> Payload:
    """A :class:`Payload` for a document read back from the spool."""
    units = _units_of(document)
    return Payload(encode(document), len(units), sum(unit[3] for unit in units))


def split_payload(payload: Payload) -> list[Payload]:
    """Split one body (a 413) in two halves that together carry the same counts, and the
    snapshot's deltas with them; ``[payload]`` when it holds a single unit."""
    if payload.units < 2:
        return [payload]
    document = payload.document
    units = _units_of(document)
    middle = len(units) // 2
    flags = list(payload._toggles.items())
    rest = middle - len(flags)  # the samples that go in the first half
    first: list[tuple[MetricDelta, Sequence[int]]] = []
    second: list[tuple[MetricDelta, Sequence[int]]] = []
    for metric, indexes in payload._picked:
        cut = min(max(rest, 0), len(indexes))
        rest -= len(indexes)
        if cut:
            first.append((metric, indexes[:cut]))
        if cut < len(indexes):
            second.append((metric, indexes[cut:]))
    return [Payload(encode(_document_of(document, half)), len(half),
                    sum(unit[3] for unit in half), payload._window, dict(toggles), tuple(picked))
            for half, toggles, picked in ((units[:middle], flags[:middle], first),
                                          (units[middle:], flags[middle:], second))]


def _document_of(document: dict[str, Any], units: list[_Unit]) -> dict[str, Any]:
    half = {k: v for k, v in document.items() if k != "impactMetrics"}
    toggles: dict[str, Any] = {}
    half["bucket"] = dict(document["bucket"], toggles=toggles)
    metrics: dict[tuple[str, str, str], dict[str, Any]] = {}
    for flag, item, shell, _ in units:
        if shell is None:
            toggles[flag] = item  # type: ignore[index]
            continue
        metric = metrics.get(shell)
        if metric is None:
            name, help_text, kind = shell
            metric = metrics[shell] = {"name": name, "help": help_text, "type": kind,
                                       "samples": []}
        metric["samples"].append(item)
    if metrics:
        half["impactMetrics"] = list(metrics.values())
    return half


def count_events(document: dict[str, Any]) -> int:
    """The recorded events a body carries (a gauge sample is one)."""
    return sum(unit[3] for unit in _units_of(document))


def _sample_events(kind: str, sample: dict[str, Any]) -> int:
    if kind == "counter":
        return int(sample["value"])
    if kind == "histogram":
        return int(sample["count"])
    return 1
