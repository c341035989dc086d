"""Turning a :class:`Snapshot` into ``ClientMetrics`` request bodies for Unleash.

The bodies are what real servers accept (see the protocol notes): ISO-8601 UTC dates, a
``bucket`` always, flags with counts only, ``appName`` and ``environment`` labels on every
sample, cumulative histogram buckets ending with the string ``"+Inf"``, no NaN, infinity
or count past the server's limits, and no body over ``max_bytes``: a big snapshot is split
across bodies that together carry every count once.
"""

from __future__ import annotations

import functools
import json
import math
import platform
import uuid
from array import array
from datetime import datetime, timezone
from json.encoder import encode_basestring_ascii as _json_string  # what _ENCODER uses
from typing import Any, Dict, Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple

from .._version import __version__
from ._numbers import MAX_SAFE
from .server_limits import MAX_VARIANT_COUNT
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

    def fields(self) -> Dict[str, Any]:
        """The fields naming the sender in every body: metrics and registration alike."""
        return {
            "appName": self.app_name,
            "instanceId": self.instance_id,
            "connectionId": self.connection_id,
            "environment": self.environment,
            "sdkVersion": self.sdk_version,
            "platformName": self.platform_name,
            "platformVersion": self.platform_version,
            "yggdrasilVersion": None,
            "specVersion": self.spec_version,
        }


def iso_utc(moment: datetime) -> str:
    """``2026-11-25T03:15:20.123Z``: ISO-8601 in UTC with milliseconds."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def milliseconds(seconds: float) -> int:
    """An interval as the protocol says it (the ``unleash-interval`` header, a registration)."""
    return int(seconds * 1000)


# One encoder for every call: json.dumps() with options builds a new one each time.
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def encode(document: Dict[str, Any]) -> bytes:
    """Compact JSON, refusing NaN and infinities (which these servers cannot parse)."""
    return _ENCODER.encode(document).encode("ascii")


def _base_labels(identity: Identity) -> Dict[str, str]:
    return {"appName": identity.app_name, "environment": identity.environment}


def _sample_wire(family: Any, child: Any, value: Any, counts: Sequence[int],
                 base_labels: Dict[str, str]) -> Optional[Dict[str, Any]]:
    """The wire form of one sample, or ``None`` if it cannot be sent (an overflowed sum);
    encoded at once and dropped: the units keep the bytes."""
    labels = dict(base_labels)
    labels.update(zip(family.label_names, child.label_values))
    if family.kind == "histogram":
        if not math.isfinite(value):
            return None
        buckets, running = [], 0
        for le, n in zip(family.buckets, counts):
            running += n
            buckets.append({"le": le, "count": running})
        total = running + counts[-1]
        buckets.append({"le": "+Inf", "count": total})
        return {"labels": labels, "count": total, "sum": value, "buckets": buckets}
    return {"labels": labels, "value": value}


def _header(snapshot: Snapshot, identity: Identity) -> Dict[str, Any]:
    return {
        **identity.fields(),
        "sdkType": "backend",
        "bucket": {"start": iso_utc(snapshot.start), "stop": iso_utc(snapshot.stop),
                   "toggles": {}},
    }


def _toggle_json(delta: Any) -> Dict[str, Any]:
    return {"yes": delta.yes, "no": delta.no, "variants": dict(delta.variants)}


def _flag_json(name: str, toggle: Dict[str, Any]) -> bytes:
    return json.dumps(name).encode("ascii") + b":" + encode(toggle)


class Units:
    """The indivisible pieces of a body (a flag's counts, or one sample), in columns: entry
    ``i`` of each describes unit ``i``. Machine numbers in arrays, not an object per unit, so
    that a build of 100,000 samples leaves the cyclic GC a few objects to visit.

    - ``data``: every unit's JSON, encoded once (unit ``i`` is ``data[starts[i]:ends[i]]``),
      shared by the parts of a build and never changed;
    - ``events``: the events each carries (a list once a count passes ``2**63``);
    - ``groups``: unit ``i`` comes from ``origins[groups[i]]``, a ``(flag, metric, source)``
      per flag and per run of one metric's samples; ``source`` is the delta to merge back
      (None when read back from the spool);
    - ``indexes``: a sample's series index in its ``MetricDelta`` (-1 for a flag).
    """

    __slots__ = ("data", "ends", "events", "groups", "indexes", "origins", "starts")

    def __init__(self) -> None:
        self.data = bytearray()
        self.starts = array("q")
        self.ends = array("q")
        self.events: Any = array("q")
        self.groups = array("q")
        self.indexes = array("q")
        self.origins: List[Tuple[Optional[str], Optional[Tuple[str, str, str]], Any]] = []

    def origin(self, flag: Optional[str], metric: Optional[Tuple[str, str, str]],
               source: Any = None) -> int:
        """The group of the units that follow: the last one again when it is the same
        metric's samples from the same source, else a new one."""
        origins = self.origins
        if flag is None and origins:
            last = origins[-1]
            if last[0] is None and last[1] is metric and last[2] is source:
                return len(origins) - 1
        origins.append((flag, metric, source))
        return len(origins) - 1

    def add(self, encoded: bytes, flag: Optional[str], metric: Optional[Tuple[str, str, str]],
            events: int, source: Any = None, index: int = -1) -> None:
        group = self.origin(flag, metric, source)
        self.starts.append(len(self.data))
        self.data += encoded
        self.ends.append(len(self.data))
        self.add_events(events)
        self.groups.append(group)
        self.indexes.append(index)

    def add_events(self, events: Any) -> None:
        """Append one unit's events (an int), or a column of them (an array or list)."""
        column = self.events
        before = len(column)
        try:
            column.extend(events) if not isinstance(events, int) else column.append(events)
        except OverflowError:  # beyond 2**63: a list from now on, exact
            del column[before:]
            self.events = column = column.tolist()
            column.extend(events) if not isinstance(events, int) else column.append(events)

    def _part(self, starts: Any, ends: Any, events: Any, groups: Any, indexes: Any) -> Units:
        part = Units.__new__(Units)
        part.data, part.origins = self.data, self.origins
        part.starts, part.ends, part.events = starts, ends, events
        part.groups, part.indexes = groups, indexes
        return part

    def pick(self, indexes: Sequence[int]) -> Units:
        """The units at ``indexes`` (increasing), in that order."""
        if indexes and indexes[-1] - indexes[0] == len(indexes) - 1:  # a run: slice it
            return self.slice(indexes[0], indexes[-1] + 1)
        return self._part(*(_pick(column, indexes) for column in
                            (self.starts, self.ends, self.events, self.groups, self.indexes)))

    def slice(self, start: int, stop: int) -> Units:
        return self._part(self.starts[start:stop], self.ends[start:stop],
                          self.events[start:stop], self.groups[start:stop],
                          self.indexes[start:stop])

    def __len__(self) -> int:
        return len(self.starts)

    def unit(self, i: int) -> bytes:
        """Unit ``i``'s JSON."""
        return bytes(self.data[self.starts[i]:self.ends[i]])

    def metric(self, i: int) -> Optional[Tuple[str, str, str]]:
        """``(name, help, type)`` of unit ``i``'s metric, ``None`` for a flag."""
        return self.origins[self.groups[i]][1]

    @property
    def encoded(self) -> List[bytes]:
        """Each unit's JSON, as a list built when asked (for reading)."""
        return [self.unit(i) for i in range(len(self))]

    @property
    def flags(self) -> List[Optional[str]]:
        """Each unit's flag name (``None`` for a sample), built when asked."""
        return [self.origins[group][0] for group in self.groups]

    @property
    def metrics(self) -> List[Optional[Tuple[str, str, str]]]:
        """Each unit's metric (``None`` for a flag), built when asked."""
        return [self.origins[group][1] for group in self.groups]

    @property
    def sources(self) -> List[Any]:
        """Each unit's source delta (``None`` when read back from the spool)."""
        return [self.origins[group][2] for group in self.groups]

    def describe(self, i: int) -> str:
        """``flag 'name'`` or ``counter 'name'``: unit ``i`` in a drop's detail."""
        flag, metric, _ = self.origins[self.groups[i]]
        return f"flag {flag!r}" if metric is None else f"{metric[2]} {metric[0]!r}"


def _pick(column: Any, indexes: Sequence[int]) -> Any:
    """The items of ``column`` (an array or a list) at ``indexes``, in a column of its kind."""
    items = [column[i] for i in indexes]
    return array(column.typecode, items) if isinstance(column, array) else items


def _units(snapshot: Snapshot, base: Dict[str, str], drops: DropCounter) -> Units:
    units = Units()
    for name, delta in snapshot.toggles.items():
        # yes == no == 0 is a flag the server ignores; the recorder never makes one with
        # variant counts (one count per evaluation and state: see flags.FlagStats).
        if not (delta.yes or delta.no):
            continue
        if any(n > MAX_VARIANT_COUNT for n in delta.variants.values()):
            # Never from the recorder, which fits each hour (flags.fit_hour): a snapshot
            # made otherwise, which cannot be split here (nothing to give the rest back to).
            drops.add("variant_count_limit", delta.yes + delta.no, detail=f"flag {name!r}")
            continue
        units.add(_flag_json(name, _toggle_json(delta)), name, None, delta.yes + delta.no,
                  delta)
    for metric in snapshot.metrics:
        family = metric.family
        shell = (family.name, family.help, family.kind)
        table = family.series_table()
        if family.kind == "histogram":
            sums = metric.numbers
            for index, position in enumerate(metric.indexes):
                counts = metric.bucket_counts(index)
                wire = _sample_wire(family, table[position], sums[index], counts, base)
                if wire is None:
                    drops.add("non_finite_sum", sum(counts), detail=f"histogram {family.name!r}")
                    continue
                if wire["count"] > MAX_SAFE:  # add_counts() takes any count: never sent
                    drops.add("unsafe_count", wire["count"], detail=f"histogram {family.name!r}")
                    continue
                units.add(encode(wire), None, shell, wire["count"], metric, index)
            continue
        _number_samples(units, units.origin(None, shell, metric), metric, base)
    return units


def _number_samples(units: Units, group: int, metric: MetricDelta, base: Dict[str, str]) -> None:
    """Add each sample of a counter or gauge to ``units`` as its JSON, written directly
    rather than through a dict per sample: byte for byte what ``encode(_sample_wire(...))``
    gives (labels ``base`` then the family's in order; a str escaped by the encoder's own C
    function; an int or a finite float as its repr, as the encoder writes them). Anything
    else (a NaN the encoder refuses) goes through the encoder."""
    family = metric.family
    table = family.series_table()
    head = _ENCODER.encode({"labels": base})[:-2]  # '{"labels":{"appName":..,"environment":..'
    names = [f",{_json_string(name)}:" for name in family.label_names]
    data, starts, ends = units.data, units.starts, units.ends
    count = len(metric.indexes)
    first = len(starts)
    numbers: Iterable[Any] = metric.numbers
    if metric.ints:  # a gauge's ints as ints, one at a time (not a list of every value)
        numbers = (int(n) if is_int else n for n, is_int in zip(numbers, metric.ints))
    sole = names[0] if len(names) == 1 else None  # one label: no list to join
    for position, value in zip(metric.indexes, numbers):
        child = table[position]
        starts.append(len(data))  # the unit ends where the next starts (see below)
        if value.__class__ is int or (value.__class__ is float and math.isfinite(value)):
            if sole is not None:
                labels = sole + _json_string(child.label_values[0])
            else:
                labels = "".join([name + _json_string(label)
                                  for name, label in zip(names, child.label_values)])
            data += f'{head}{labels}}},"value":{value!r}}}'.encode("ascii")
        else:
            data += encode(_sample_wire(family, child, value, (), base))  # type: ignore[arg-type]
    ends.extend(starts[first + 1:])
    ends.append(len(data))
    units.add_events(numbers if family.kind == "counter" else array("q", [1]) * count)
    units.groups.extend(array("q", [group]) * count)
    units.indexes.extend(range(count))


@functools.lru_cache(maxsize=1024)
def _shell_json(metric: Tuple[str, str, str]) -> bytes:
    """``{"name":..,"help":..,"type":..,"samples":[`` for a metric (its samples follow)."""
    name, help_text, kind = metric
    return encode({"name": name, "help": help_text, "type": kind, "samples": []})[:-2]


def _shell_size(metric: Tuple[str, str, str]) -> int:
    return len(_shell_json(metric)) + len(b"]},")


class Payload:
    """One request body: its exact bytes, the units it carries, and the events they hold.

    ``header`` is its document without flags and samples (what a split copies);
    ``document`` is decoded from ``body`` when asked, not kept (a dict per sample is what
    made big builds pause recording threads).
    """

    __slots__ = ("_document", "body", "events", "header", "units", "window")

    def __init__(self, header: Dict[str, Any], body: bytes, units: Optional[Units] = None,
                 window: Optional[Tuple[datetime, datetime]] = None,
                 document: Optional[Dict[str, Any]] = None) -> None:
        self.header = header
        self.body = body
        self.units = units if units is not None else Units()
        self.window = window
        self.events = sum(self.units.events)
        self._document = document

    @property
    def document(self) -> Dict[str, Any]:
        """The ClientMetrics body as a dict (decoded from ``body`` unless it was read)."""
        if self._document is not None:
            return self._document
        decoded: Dict[str, Any] = json.loads(self.body)
        return decoded

    def part(self) -> Optional[Snapshot]:
        """The slice of the snapshot this body carries, to restore if it is not delivered.

        ``None`` for a body without recorder deltas (one replayed from the spool).
        """
        units = self.units
        origins = units.origins
        groups = set(units.groups)
        if self.window is None or any(origins[group][2] is None for group in groups):
            return None
        toggles: Dict[str, Any] = {}
        picked: Dict[int, Tuple[MetricDelta, Any]] = {}  # by id of the MetricDelta
        for group, index in zip(units.groups, units.indexes):
            flag, _, source = origins[group]
            if flag is not None:
                toggles[flag] = source
            else:
                entry = picked.get(id(source))
                if entry is None:
                    entry = picked[id(source)] = (source, array("q"))
                entry[1].append(index)
        metrics = tuple(source.subset(indexes) for source, indexes in picked.values())
        return Snapshot(self.window[0], self.window[1], toggles, metrics)


def _assemble(header: Dict[str, Any], units: Units,
              window: Optional[Tuple[datetime, datetime]]) -> Payload:
    return Payload(header, _join(header, units), units, window)


#: How an encoded header ends when its bucket (the last key) has no toggles yet.
_EMPTY_TOGGLES_END = b'"toggles":{}}}'


def _head(header: Dict[str, Any]) -> Dict[str, Any]:
    """``header`` without flags or samples."""
    head = {k: v for k, v in header.items() if k != "impactMetrics"}
    head["bucket"] = dict(header["bucket"], toggles={})
    return head


def _join(header: Dict[str, Any], units: Units) -> bytes:
    """The body's bytes, joined from the units' own encodings: byte for byte what
    encoding its document gives, without encoding every sample a second time."""
    head_json = encode(_head(header))
    if not head_json.endswith(_EMPTY_TOGGLES_END):  # a document with another key order
        return encode(_document_of(header, units))
    pieces: Dict[Tuple[str, str, str], List[Any]] = {}  # each metric's encoded samples
    toggles: List[Any] = []
    data, starts, ends, origins = units.data, units.starts, units.ends, units.origins
    last_group, last_pieces = -1, toggles  # units of one group come together: one lookup
    for group, start, end in zip(units.groups, starts, ends):
        if group != last_group:
            metric = origins[group][1]  # None for a flag's "name":{...}
            last_pieces = toggles if metric is None else pieces.setdefault(metric, [])
            last_group = group
        last_pieces.append(data[start:end])
    parts = [head_json[: -len(b"}}}")], b",".join(toggles), b"}}"]
    if pieces:
        parts.append(b',"impactMetrics":[')
        parts.append(b",".join(_shell_json(shell) + b",".join(encoded) + b"]}"
                               for shell, encoded in pieces.items()))
        parts.append(b"]")
    parts.append(b"}")
    return b"".join(parts)


def _document_of(header: Dict[str, Any], units: Units) -> Dict[str, Any]:
    """The document of ``header`` carrying ``units`` (decoded from their bytes)."""
    document = _head(header)
    toggles: Dict[str, Any] = {}
    metrics: Dict[str, Dict[str, Any]] = {}
    for i in range(len(units)):
        encoded, metric = units.unit(i), units.metric(i)
        if metric is None:
            toggles.update(json.loads(b"{" + encoded + b"}"))
        else:
            name, help_text, kind = metric
            shell = metrics.get(name)
            if shell is None:
                shell = metrics[name] = {"name": name, "help": help_text, "type": kind,
                                         "samples": []}
            shell["samples"].append(json.loads(encoded))
    document["bucket"]["toggles"] = toggles
    if metrics:
        document["impactMetrics"] = list(metrics.values())
    return document


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


def _pack(header: Dict[str, Any], units: Units, max_bytes: int, drops: DropCounter,
          window: Optional[Tuple[datetime, datetime]]) -> List[Payload]:
    # "impactMetrics": [] may be added to any body: count it up front.
    base_size = len(encode(header)) + len(',"impactMetrics":[]')
    # The units of each body, by index in ``units``: arrays, not lists of ints (a list of
    # 100,000 ints is what a young collection would walk item by item).
    bodies: List[Any] = []
    current = array("q")
    shells: Set[str] = set()
    used = base_size
    last_metric: Optional[Tuple[str, str, str]] = None
    last_shell = 0
    origins, groups, starts, ends = units.origins, units.groups, units.starts, units.ends
    for i in range(len(units)):
        metric = origins[groups[i]][1]
        size = ends[i] - starts[i] + 1  # with its separator
        if metric is None:
            shell = 0
        elif metric is last_metric:  # most units: the same metric as the one before
            shell = last_shell
        else:
            shell = last_shell = _shell_size(metric)
            last_metric = metric
        if base_size + shell + size > max_bytes:
            drops.add("oversize_item", units.events[i], detail=units.describe(i)[:200])
            continue
        if metric is not None and metric[0] in shells:
            shell = 0
        if used + shell + size > max_bytes:
            bodies.append(current)
            current, shells, used = array("q"), set(), base_size
            shell = _shell_size(metric) if metric is not None else 0
        current.append(i)
        used += shell + size
        if metric is not None:
            shells.add(metric[0])
    if current or not bodies:
        bodies.append(current)
    return [_assemble(header, units.pick(body), window) for body in bodies]


def payload_from_document(document: Dict[str, Any]) -> Payload:
    """A :class:`Payload` for a document read back (from the spool), splittable as usual."""
    units = Units()
    for name, toggle in document.get("bucket", {}).get("toggles", {}).items():
        units.add(_flag_json(name, toggle), name, None, int(toggle["yes"]) + int(toggle["no"]))
    for metric in document.get("impactMetrics") or []:
        shell = (metric["name"], metric["help"], metric["type"])
        for sample in metric["samples"]:
            units.add(encode(sample), None, shell, _sample_events(metric["type"], sample))
    return Payload(document, encode(document), units, None, document)


def split_payload(payload: Payload) -> List[Payload]:
    """Split one body in two halves that together carry the same counts (for a 413).

    Returns ``[payload]`` unchanged when it holds a single unit and cannot be split.
    """
    units = payload.units
    if len(units) < 2:
        return [payload]
    middle = len(units) // 2
    return [_assemble(payload.header, half, payload.window)
            for half in (units.slice(0, middle), units.slice(middle, len(units)))]


def count_events(document: Dict[str, Any]) -> int:
    """The recorded events a body carries: flag evaluations, counter increments,
    histogram observations and gauge values (one per sample)."""
    events: int = sum(t["yes"] + t["no"] for t in document.get("bucket", {}).get("toggles", {})
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
