"""Per-series tallies of events, for the model test: recorded, delivered, refused, pending, on disk.

A *series* is what a server keeps a running total of: a counter or a histogram with one set
of labels, or one flag's ``yes`` or ``no``. Its *events* are counter increments, histogram
observations and flag evaluations, the unit of ``Agent.statistics()["dropped"]``. Variant
counts, histogram sums and buckets, and gauge values are kept beside the events: they are
checked too, but are not events of their own.

The same :class:`Tally` adds up what the model recorded, what the server stored, what it
refused, what an agent still holds and what its spool holds on disk, so that the invariant
is one subtraction per series.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections import Counter
from pathlib import Path
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import impactagent

Labels = FrozenSet[Tuple[str, str]]
Key = Tuple[str, str, Labels]  # (kind, name, labels): kind is counter, histogram or flag
Le = Union[float, str]  # a bucket boundary, or "+Inf"

#: Labels every sample carries; the model's series are told apart by the others.
BASE_LABELS = ("appName", "environment")


def labels_of(mapping: Mapping[str, Any]) -> Labels:
    return frozenset((k, str(v)) for k, v in mapping.items() if k not in BASE_LABELS)


def flag_key(flag: str, answer: str) -> Key:
    """The series of one flag's ``yes`` or ``no`` count."""
    return ("flag", flag, frozenset({("answer", answer)}))


def show(key: Key) -> str:
    kind, name, labels = key
    inner = ",".join(f"{k}={v}" for k, v in sorted(labels))
    return f"{kind} {name}{{{inner}}}"


class Tally:
    """Events per series, plus variants, histogram details and gauge values."""

    def __init__(self) -> None:
        self.events: Counter[Key] = Counter()
        self.variants: Counter[Tuple[str, str]] = Counter()
        self.sums: Dict[Key, float] = {}
        self.buckets: Dict[Key, Counter[Le]] = {}
        self.gauges: Dict[Tuple[str, Labels], Any] = {}  # the last value seen per series

    # -- what the app records ------------------------------------------------------------------

    def count(self, name: str, labels: Mapping[str, str], amount: int) -> None:
        self.events[("counter", name, labels_of(labels))] += amount

    def observe(self, name: str, labels: Mapping[str, str], value: float,
                bounds: Sequence[float]) -> None:
        key = ("histogram", name, labels_of(labels))
        self.events[key] += 1
        self.sums[key] = self.sums.get(key, 0.0) + value
        index = bisect_left(bounds, value)
        le: Le = bounds[index] if index < len(bounds) else "+Inf"
        self.buckets.setdefault(key, Counter())[le] += 1

    def flag(self, name: str, enabled: bool, variant: Optional[str]) -> None:
        self.events[flag_key(name, "yes" if enabled else "no")] += 1
        if variant is not None:
            self.variants[(name, variant)] += 1

    def set_gauge(self, name: str, labels: Mapping[str, str], value: Any) -> None:
        self.gauges[(name, labels_of(labels))] = value

    # -- what a body carries -------------------------------------------------------------------

    def add_document(self, document: Dict[str, Any], *, metrics: bool = True) -> None:
        """Add one ClientMetrics body; ``metrics=False`` keeps only its flag counts (a body
        whose impactMetrics array the server discarded)."""
        bucket = document.get("bucket")
        toggles = bucket.get("toggles") if isinstance(bucket, dict) else None
        for flag, toggle in (toggles if isinstance(toggles, dict) else {}).items():
            self.events[flag_key(flag, "yes")] += toggle.get("yes", 0)
            self.events[flag_key(flag, "no")] += toggle.get("no", 0)
            for variant, n in (toggle.get("variants") or {}).items():
                self.variants[(flag, variant)] += n
        if not metrics:
            return
        for metric in document.get("impactMetrics") or []:
            for sample in metric["samples"]:
                labels = labels_of(sample.get("labels") or {})
                key = (metric["type"], metric["name"], labels)
                if metric["type"] == "counter":
                    self.events[key] += sample["value"]
                elif metric["type"] == "gauge":
                    self.gauges[(metric["name"], labels)] = sample["value"]
                else:
                    self.events[key] += sample["count"]
                    self.sums[key] = self.sums.get(key, 0.0) + sample["sum"]
                    into = self.buckets.setdefault(key, Counter())
                    below = 0
                    for bucket in sample["buckets"]:
                        into[bucket["le"]] += bucket["count"] - below
                        below = bucket["count"]

    def add(self, other: Tally, sign: int = 1) -> None:
        """Add (or with ``sign=-1`` take away) another tally's events, variants and details."""
        for key, n in other.events.items():
            self.events[key] += sign * n
        for key, n in other.variants.items():
            self.variants[key] += sign * n
        for key, total in other.sums.items():
            self.sums[key] = self.sums.get(key, 0.0) + sign * total
        for key, counts in other.buckets.items():
            into = self.buckets.setdefault(key, Counter())
            for le, n in counts.items():
                into[le] += sign * n

    def event_total(self) -> int:
        return sum(self.events.values())


def documents_tally(documents: Iterable[Dict[str, Any]]) -> Tally:
    tally = Tally()
    for document in documents:
        tally.add_document(document)
    return tally


def pending_documents(agent: impactagent.Agent) -> List[Dict[str, Any]]:
    """What ``agent`` still holds, as bodies, without changing it: a collect, the bodies it
    would make (into a throwaway drop counter, and without a size limit), and a restore.
    Only valid when no flush runs at the same time."""
    snapshot = agent.collect()
    try:
        payloads = impactagent.build_payloads(snapshot, agent.identity, max_bytes=10**12,
                                              drops=impactagent.DropCounter())
        return [json.loads(p.body) for p in payloads]
    finally:
        agent.restore(snapshot)


def spool_files(directory: Path) -> List[Path]:
    """The bodies queued in a spool directory (and any left claimed), oldest first."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir()
                  if p.name.endswith(".json") or p.name.endswith(".sending"))


def read_json(path: Path) -> Optional[Dict[str, Any]]:
    """A spool file's document, or None if it is not one (corrupt, gone, not a file)."""
    try:
        document = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None
