"""The impact view's numbers (``GET /api/impact``): for each flag, each metric labelled by
it (it carries the label the agent names after the flag, and the flag's evaluations came from
the same app), aggregated per variant (or ``enabled`` / ``disabled``) over a window of the last
hour, as Unleash's impact charts aggregate them. A metric labelled by no flag is one group,
``all``; a step without samples is ``null``.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

from ..core._naming import flag_label_name
from .timeseries import SeriesStore

QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))
#: The group of a metric labelled by no flag.
ALL = "all"
_INF = float("inf")


def quantile(q: float, buckets: dict[Any, float]) -> float | None:
    """The ``q``-quantile of cumulative ``buckets`` (``{upper bound: count}``, ``"+Inf"``
    last) as Prometheus' ``histogram_quantile`` estimates it; None without observations.

    >>> quantile(0.5, {0.1: 2, 0.5: 6, 1.0: 8, "+Inf": 8})  # rank 4: half-way in (0.1, 0.5]
    0.30000000000000004
    """
    bounds: list[tuple[float, float]] = []
    for bound, n in sorted((_INF if le == "+Inf" else float(le), n) for le, n in buckets.items()):
        # Series whose bounds differ can sum to falling counts: made monotonic, as Prometheus.
        bounds.append((bound, max(n, bounds[-1][1]) if bounds else n))
    if not bounds or bounds[-1][0] != _INF or bounds[-1][1] <= 0:
        return None
    rank = q * bounds[-1][1]
    below_bound, below_count = 0.0, 0.0
    for index, (bound, count) in enumerate(bounds):
        if count >= rank:
            if bound == _INF:
                return bounds[index - 1][0] if index > 0 else None
            if index == 0 and bound <= 0:
                return bound
            inside = count - below_count
            if inside <= 0:
                return below_bound
            return below_bound + (bound - below_bound) * (rank - below_count) / inside
        below_bound, below_count = bound, count
    return None


def impact(store: SeriesStore, window: float | None = None,
           now: float | None = None, *, resolution: int = 1,
           selectors: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """The aggregations of the last ``window`` seconds (at most the hour kept), ending with
    the step ``now`` is in; a point covers ``resolution`` steps. With ``selectors``
    (``{label: [values]}``) only the series whose labels match are aggregated."""
    step = store.step * resolution
    count = store.steps // resolution if window is None else math.ceil(window / step)
    count = max(1, min(store.steps // resolution, count))
    steps = count * resolution
    last = store.step_of(store.clock() if now is None else now)
    last = (last // resolution + 1) * resolution - 1  # points start on whole multiples
    first = last - steps + 1
    seconds = steps * store.step
    flags, metrics = _collected(store, first, last, selectors)
    indices = [range(i, i + resolution) for i in range(first, last + 1, resolution)]
    flag_views = [_exposure(app, flag, cells, indices, store.step)
                  for (app, flag), cells in sorted(flags.items())]
    # Two flag names can give one label (new-checkout, new.checkout): a label keeps both.
    flags_of: dict[tuple[str, str], list[tuple[str, set[str]]]] = {}
    for view in flag_views:
        flags_of.setdefault((view["app"], view["label"]), []).append(
            (view["flag"], set(view["exposure"])))
    metric_views = [view for (app, name, kind), series in sorted(metrics.items())
                    for view in _metric_views(app, name, kind, series, flags_of,
                                              indices, store.step, seconds)]
    return {"step_seconds": step, "window_seconds": seconds, "from": first * store.step,
            "to": (last + 1) * store.step, "memory": store.size(),
            "flags": flag_views, "metrics": metric_views}


Cells = dict[int, Any]
LabelledCells = list[tuple[dict[str, str], Cells]]


def _collected(store: SeriesStore, first: int, last: int,
               selectors: Mapping[str, Sequence[str]] | None
               ) -> tuple[dict[tuple[str, str], Cells], dict[tuple[str, str, str], LabelledCells]]:
    flags: dict[tuple[str, str], Cells] = {}
    metrics: dict[tuple[str, str, str], LabelledCells] = {}
    for key, kind, cells in store.snapshot(first, last):
        parts: tuple[Any, ...] = key  # type: ignore[assignment]
        if kind == "flag":
            flags[(parts[1], parts[2])] = cells
            continue
        labels = dict(parts[4])
        if not selectors or all(labels.get(k) in v for k, v in selectors.items()):
            metrics.setdefault((parts[1], parts[2], kind), []).append((labels, cells))
    return flags, metrics


def _metric_views(app: str, name: str, kind: str, series: LabelledCells,
                  flags_of: dict[tuple[str, str], list[tuple[str, set[str]]]],
                  indices: list[range], step: float, seconds: float) -> list[dict[str, Any]]:
    """One view of a metric per flag whose label it carries (one, ``all``, for none)."""
    names = sorted({n for labels, _ in series for n in labels})
    by: list[tuple[str | None, str | None]] = [
        (_flag_of(flags_of[(app, n)], {labels[n] for labels, _ in series if n in labels}), n)
        for n in names if (app, n) in flags_of] or [(None, None)]
    views = []
    for flag, label in by:
        groups: dict[str, list[Cells]] = {}
        for labels, cells in series:
            groups.setdefault(ALL if label is None else labels.get(label, ALL), []).append(cells)
        views.append({"app": app, "name": name, "type": kind, "flag": flag, "label": label,
                      "groups": {group: _aggregate(kind, cells, indices, step, seconds)
                                 for group, cells in sorted(groups.items())}})
    return views


def _flag_of(candidates: list[tuple[str, set[str]]], values: set[str]) -> str:
    """Of the flags named alike, the one whose groups hold most of the label's values."""
    return max(candidates, key=lambda flag: len(flag[1] & values))[0]


def _aggregate(kind: str, series: list[dict[int, Any]], indices: Iterable[range],
               step: float, seconds: float) -> dict[str, Any]:
    """The window's aggregation of one group's series, and one point per run of steps."""
    points = [{"t": run[0] * step,
               **_values(kind, [[s[i] for i in run if i in s] for s in series],
                         len(run) * step)}
              for run in indices]
    return {**_values(kind, [list(s.values()) for s in series], seconds), "points": points}


def _values(kind: str, series: list[list[Any]], seconds: float) -> dict[str, Any]:
    cells = [cell for one in series for cell in one]
    if kind == "counter":
        increase = sum(cells)
        return {"increase": increase, "rate": increase / seconds}
    if kind == "gauge":
        samples = sum(c["samples"] for c in cells)
        lasts = [max(c["last"] for c in one) for one in series if one]
        return {"last": max(lasts)[1] if lasts else None,
                "average": sum(c["sum"] for c in cells) / samples if samples else None,
                "samples": samples,
                # Each series' last value, added up: Unleash's "sum" of a gauge.
                "total": sum(last[1] for last in lasts) if lasts else None}
    count = sum(c["count"] for c in cells)
    total = sum(c["sum"] for c in cells)
    buckets: dict[Any, float] = {}
    for cell in cells:
        for le, n in cell["buckets"].items():
            buckets[le] = buckets.get(le, 0) + n
    return {"count": count, "sum": total, "mean": total / count if count else None,
            **{name: quantile(q, buckets) for name, q in QUANTILES}}


def _exposure(app: str, flag: str, cells: dict[int, Any], indices: Iterable[range],
              step: float) -> dict[str, Any]:
    def shares(counted: list[dict[str, Any]]) -> dict[str, Any]:
        groups: dict[str, float] = {}
        for cell in counted:
            # By the label value a metric recorded after them gets.
            variants = {k: n for k, n in cell["variants"].items() if k != "disabled" and n}
            # Evaluations of variants the store refused are no one's group, not "enabled".
            enabled = cell["yes"] - sum(variants.values()) - cell.get("refused", 0)
            if enabled > 0:
                variants["enabled"] = enabled
            if cell["no"]:
                variants["disabled"] = cell["no"]
            for group, n in variants.items():
                groups[group] = groups.get(group, 0) + n
        total = sum(groups.values())
        return {"evaluations": total, "exposure": {
            group: {"evaluations": n, "share": n / total if total else None}
            for group, n in sorted(groups.items())}}

    points = [{"t": run[0] * step, **shares([cells[i] for i in run if i in cells])}
              for run in indices]
    return {"app": app, "flag": flag, "label": flag_label_name(flag, flag) if flag else "",
            **shares(list(cells.values())), "points": points}

