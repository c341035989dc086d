"""Prometheus text read back into the shape of ``tests.workload`` totals, so that a test can
compare a scrape (ours, or the Unleash server's re-exposition) with what it recorded."""

from __future__ import annotations

from typing import Any, Dict, FrozenSet, Iterable, Tuple

from prometheus_client.parser import text_string_to_metric_families


def impact_totals(text: str, app_name: str, *, ignore_labels: Iterable[str] = ()
                  ) -> Dict[str, Dict[Any, Any]]:
    """Counters, gauges and histograms of ``app_name`` in ``text``, keyed by
    ``(metric name, frozenset of labels)`` without the labels in ``ignore_labels``."""
    ignored = set(ignore_labels)
    totals: Dict[str, Dict[Any, Any]] = {"counters": {}, "gauges": {}, "histograms": {}}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k not in ignored}
            if labels.get("appName") != app_name:
                continue
            le = labels.pop("le", None)
            key: Tuple[str, FrozenSet[Tuple[str, str]]] = (family.name,
                                                           frozenset(labels.items()))
            if family.type == "counter":
                if sample.name.endswith("_created"):
                    continue
                # The parser names the family without "_total"; ours keep the full name.
                totals["counters"][(sample.name, key[1])] = number(sample.value)
            elif family.type == "gauge":
                totals["gauges"][key] = number(sample.value)
            elif family.type == "histogram":
                histogram = totals["histograms"].setdefault(
                    key, {"count": 0, "sum": 0.0, "buckets": {}})
                if sample.name.endswith("_bucket"):
                    bound = "+Inf" if le == "+Inf" else float(le)  # type: ignore[arg-type]
                    histogram["buckets"][bound] = number(sample.value)
                elif sample.name.endswith("_count"):
                    histogram["count"] = number(sample.value)
                elif sample.name.endswith("_sum"):
                    histogram["sum"] = sample.value
    return totals


def samples(text: str, name: str) -> Dict[FrozenSet[Tuple[str, str]], Any]:
    """Every sample called ``name`` in ``text``: ``{frozenset of labels: value}``."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[frozenset(sample.labels.items())] = number(sample.value)
    return found


def number(value: float) -> Any:
    """Counts come back as floats; whole ones compare as ints with the workload's."""
    return int(value) if float(value).is_integer() else value
