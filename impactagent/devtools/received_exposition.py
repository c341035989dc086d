"""The receiver's ``/metrics``: what it holds, exposed as unleash-server 8.x re-exposes impact
metrics (``/internal-backstage/impact/metrics``), in a text every Prometheus parser accepts.

``origin="sdk"`` and ``metric_type`` are added, no ``appName``: two apps' samples with the same
labels are one series. OpenMetrics leaves out the series and ``_sum``/``_count`` its parsers
refuse.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..core.exposition_text import claimed_names, counter_base, scrub
from ..server_rules.jsvalues import js_number
from .received import ReceivedMetrics

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
#: The flag counts, which the server keeps in its database, not in this exposition.
FLAG_FAMILY = "impactagent_received_flag_evaluations_total"

_INF = float("inf")

#: A series' labels in the order written: ``((name, value), ...)``.
SeriesLabels = tuple[tuple[str, str], ...]
#: An exposed metric: its name, type, help text and series merged across apps.
Family = tuple[str, str, str, dict[SeriesLabels, Any]]


def series_labels(labels: Iterable[tuple[str, str]], kind: str) -> SeriesLabels:
    """The labels the server gives a sample with (sanitised) ``labels`` of type ``kind``."""
    result = {"origin": "sdk", "metric_type": kind, **{k: scrub(v) for k, v in labels}}
    if kind == "histogram" and "le" in result:
        result.setdefault("exported_le", result.pop("le"))
    order = {"origin": 0, "metric_type": 1}
    return tuple(sorted(result.items(), key=lambda item: (order.get(item[0], 2), item[0])))


def go_number(value: Any) -> str:
    """``value`` as prometheus_client (and Go) write a float: the canonical ``le`` form."""
    number = float(value)
    if number in (_INF, -_INF) or number != number:
        return {_INF: "+Inf", -_INF: "-Inf"}.get(number, "NaN")
    text = repr(number)
    dot = text.find(".")
    if number > 0 and dot > 6:  # Go switches to an exponent sooner than Python
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def families(received: ReceivedMetrics) -> list[Family]:
    """Every exposed impact metric family, by name, series merged across apps; of families
    whose sample names clash, the first by name (the flag counts first)."""
    by_name: dict[str, Family] = {}
    for (_app, _env, name), entry in received.metric_entries():
        kind = entry["type"]
        series = by_name.setdefault(name, (name, kind, scrub(str(entry["help"])), {}))[3]
        for raw_labels, value in entry["series"].items():
            labels = series_labels(raw_labels, kind)
            if kind == "gauge":
                series[labels] = value
            elif kind == "counter":
                series[labels] = series.get(labels, 0) + value
            else:
                total = series.setdefault(labels, {"count": 0, "sum": 0, "buckets": {}})
                total["count"] += value["count"]
                total["sum"] += value["sum"]
                for le, n in value["buckets"].items():
                    bound = _INF if le == "+Inf" else float(le)
                    total["buckets"][bound] = total["buckets"].get(bound, 0) + n
    taken = set(claimed_names(FLAG_FAMILY, "counter"))
    kept = []
    for name, family in sorted(by_name.items()):
        claims = claimed_names(name, family[1])
        if taken.isdisjoint(claims):
            taken.update(claims)
            kept.append(family)
    return kept


def flag_series(received: ReceivedMetrics) -> dict[SeriesLabels, int]:
    """Flag evaluations summed over hours, by app, environment, flag and result."""
    totals: dict[SeriesLabels, int] = {}
    for counts in received.flag_rows():
        for enabled, n in (("true", counts["yes"]), ("false", counts["no"])):
            labels = (("appName", scrub(counts["appName"])), ("environment",
                      scrub(counts["environment"])), ("feature", scrub(counts["flag"])),
                      ("enabled", enabled))
            totals[labels] = totals.get(labels, 0) + n
    return dict(sorted(totals.items()))


def text_format(received: ReceivedMetrics) -> str:
    """The Prometheus text format, version 0.0.4, as the server writes it."""
    lines: list[str] = []
    for name, kind, help_text, series in families(received):
        lines += [f"# HELP {name} {_escaped(help_text)}", f"# TYPE {name} {kind}"]
        for labels, value in series.items():
            if kind != "histogram":
                lines.append(f"{name}{_labels(labels)} {js_number(value)}")
                continue
            for bound, n in sorted(value["buckets"].items()):
                le = "+Inf" if bound == _INF else js_number(bound)
                lines.append(f"{name}_bucket{_labels((*labels, ('le', le)))} {js_number(n)}")
            lines.append(f"{name}_sum{_labels(labels)} {js_number(value['sum'])}")
            lines.append(f"{name}_count{_labels(labels)} {js_number(value['count'])}")
    lines += _flag_lines(received, FLAG_FAMILY, FLAG_FAMILY)
    return "\n".join(lines) + "\n"


def openmetrics_format(received: ReceivedMetrics) -> str:
    """OpenMetrics 1.0.0: counters as ``_total`` samples, ``# EOF`` at the end."""
    lines: list[str] = []
    for name, kind, help_text, series in families(received):
        name = counter_base(name) if kind == "counter" else name
        lines += [f"# HELP {name} {_escaped(help_text, quotes=True)}", f"# TYPE {name} {kind}"]
        for labels, value in series.items():
            if kind == "gauge":
                lines.append(f"{name}{_labels(labels)} {go_number(value)}")
            elif kind == "counter":
                if value >= 0:  # a counter below zero is not a counter to a parser
                    lines.append(f"{name}_total{_labels(labels)} {go_number(value)}")
            else:
                lines.extend(_openmetrics_histogram(name, labels, value))
    flags = counter_base(FLAG_FAMILY)
    return "\n".join([*lines, *_flag_lines(received, flags, flags + "_total"), "# EOF"]) + "\n"


def _flag_lines(received: ReceivedMetrics, name: str, sample: str) -> list[str]:
    return [f"# HELP {name} Flag evaluations received, by app, environment and result",
            f"# TYPE {name} counter",
            *(f"{sample}{_labels(labels)} {n}" for labels, n in flag_series(received).items())]


def _openmetrics_histogram(name: str, labels: SeriesLabels, value: dict[str, Any]) -> list[str]:
    buckets = sorted(value["buckets"].items())
    counts = [n for _, n in buckets]
    whole = all(float(n).is_integer() and n >= 0 for n in [*counts, value["count"]])
    if (not whole or counts != sorted(counts) or not buckets or buckets[-1][0] != _INF
            or counts[-1] != value["count"]):
        return []  # not a histogram OpenMetrics can state: left out of this format
    lines = [f"{name}_bucket{_labels((*labels, ('le', go_number(bound))))} {int(n)}"
             for bound, n in buckets]
    if buckets[0][0] >= 0 and value["sum"] >= 0:  # else the spec forbids a _sum (and _count)
        lines.append(f"{name}_count{_labels(labels)} {int(value['count'])}")
        lines.append(f"{name}_sum{_labels(labels)} {go_number(value['sum'])}")
    return lines


def exposition(received: ReceivedMetrics, accept: str | None) -> tuple[bytes, str]:
    """The body and Content-Type answering a scrape with this ``Accept`` header."""
    if wants_openmetrics(accept):
        return openmetrics_format(received).encode(), OPENMETRICS_CONTENT_TYPE
    return text_format(received).encode(), TEXT_CONTENT_TYPE


def wants_openmetrics(accept: str | None) -> bool:
    """True if ``accept`` asks for OpenMetrics 1.0.0 or later, read as ``prometheus_client``
    reads it (the first ``application/openmetrics-text`` entry decides; no q-values)."""
    for entry in (accept or "").split(","):
        parts = [part.strip() for part in entry.split(";")]
        if parts[0] != "application/openmetrics-text":
            continue
        versions = [p.split("=", 1)[1] for p in parts[1:] if p.startswith("version=")]
        if not versions or _version(versions[0]) >= (1, 0, 0):
            return True
    return False


def _version(text: str) -> tuple[int, ...]:
    numbers = []
    for part in text.strip().split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)


def _escaped(text: str, *, quotes: bool = False) -> str:
    escaped = text.replace("\\", "\\\\").replace("\n", "\\n")
    return escaped.replace('"', '\\"') if quotes else escaped


def _labels(labels: SeriesLabels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escaped(value, quotes=True)}"'
                          for name, value in labels) + "}"
