"""Families as plain data, ``[name, type, help, [[sample, {labels}, value], ...]]``, and
their sum sample by sample. The first worker read decides a family's type and help; one that
disagrees (a rolling deploy) has that family left out.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, List, Set, Tuple

from prometheus_client.metrics_core import Metric

Plain = List[Any]
_Key = Tuple[str, Tuple[Tuple[str, str], ...]]
_KINDS = ("counter", "gauge", "histogram")


def to_plain(metrics: Iterable[Metric]) -> List[Plain]:
    """Families as JSON-ready lists."""
    return [[m.name, m.type, m.documentation,
             [[s.name, dict(s.labels), s.value] for s in m.samples]] for m in metrics]


class Totals:
    """Families added up, in the order first seen."""

    def __init__(self) -> None:
        self._families: Dict[str, Tuple[str, str, Dict[_Key, float]]] = {}

    def add(self, families: Iterable[Plain], *, gauges: bool = True,
            extra: Tuple[Tuple[str, str], ...] = ()) -> None:
        """Add one worker's families (``extra``: labels for each sample, as a ``pid``).
        Malformed entries are skipped: a file is never trusted."""
        for family in families:
            try:
                name, kind, help_text, samples = family
                if kind not in _KINDS or (kind == "gauge" and not gauges):
                    continue
                known = self._families.setdefault(name, (kind, help_text, {}))
                if known[0] != kind:
                    continue
                values = known[2]
                for sample_name, labels, value in samples:
                    key = (str(sample_name),
                           tuple((str(k), str(v)) for k, v in labels.items()) + extra)
                    values[key] = values.get(key, 0) + float(value)
            except (TypeError, ValueError, AttributeError):
                continue

    def plain(self) -> List[Plain]:
        """The totals as plain families again (what the departed file keeps)."""
        return [[name, kind, help_text,
                 [[sample, dict(labels), value] for (sample, labels), value in values.items()]]
                for name, (kind, help_text, values) in self._families.items()]

    def metrics(self) -> Iterator[Metric]:
        for name, (kind, help_text, values) in self._families.items():
            metric = Metric(name, help_text, kind)
            hidden = _unsound_counts(values) if kind == "histogram" else set()
            for (sample, labels), value in values.items():
                if (sample, labels) not in hidden:
                    metric.add_sample(sample, dict(labels), value)
            if metric.samples:
                yield metric


def _unsound_counts(values: Dict[_Key, float]) -> Set[_Key]:
    """The ``_sum``/``_count`` samples of series whose count is not the +Inf bucket's (a
    worker left both out, for a negative sum)."""
    infinite: Dict[Tuple[str, Tuple[Tuple[str, str], ...]], float] = {}
    for (sample, labels), value in values.items():
        if sample.endswith("_bucket") and ("le", "+Inf") in labels:
            base = sample[:-len("_bucket")]
            infinite[(base, tuple(kv for kv in labels if kv[0] != "le"))] = value
    hidden = set()
    for (sample, labels), value in values.items():
        if sample.endswith("_count"):
            base = sample[:-len("_count")]
            if infinite.get((base, labels)) != value:
                hidden.add((sample, labels))
                hidden.add((base + "_sum", labels))
    return hidden

