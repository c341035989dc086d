"""The impact view on the receiver's page: per flag, its exposure and each metric labelled by
it, one SVG chart per metric with a line per variant and a table of the window's numbers.
Every chart is a ``<figure class="chart">`` with ``data-flag``, ``data-metric`` and
``data-aggregation``.
"""

from __future__ import annotations

import html
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .svg import colours, line_chart
from .units import human

#: What each chart draws, by metric type: (aggregation drawn, columns of its table).
DRAWN = {"counter": ("rate", ("increase", "rate")),
         "gauge": ("average", ("last", "average")),
         "histogram": ("p95", ("p50", "p95", "p99", "mean", "count"))}


def palette_of(view: Dict[str, Any]) -> Dict[str, str]:
    """A colour for every group (variant, enabled, disabled, all) in ``view``."""
    return colours(sorted({g for f in view["flags"] for g in f["exposure"]}
                          | {g for m in view["metrics"] for g in m["groups"]}))


def impact_section(view: Dict[str, Any], palette: Optional[Dict[str, str]] = None) -> str:
    """The HTML of the impact view for ``view`` (what :func:`.impact.impact` answers)."""
    palette = palette or palette_of(view)
    x_range = (view["from"], view["to"])
    parts: List[str] = [refusals(view.get("memory", {}))]
    for flag in view["flags"]:
        charts = [exposure_figure(flag, x_range, palette)]
        charts += [metric_figure(m, x_range, palette) for m in view["metrics"]
                   if m["flag"] == flag["flag"] and m["app"] == flag["app"]]
        parts.append(f'<section class="flag" data-flag="{_e(flag["flag"])}" '
                     f'data-app="{_e(flag["app"])}"><h3>{_e(flag["flag"])} '
                     f'<small>({_e(flag["app"])}, {flag["evaluations"]:,} evaluations)</small>'
                     f'</h3><div class="charts">{"".join(charts)}</div></section>')
    unflagged = [metric_figure(m, x_range, palette) for m in view["metrics"] if m["flag"] is None]
    if unflagged:
        parts.append('<section class="flag" data-flag=""><h3>Metrics labelled by no flag</h3>'
                     f'<div class="charts">{"".join(unflagged)}</div></section>')
    return "".join(parts) or "<p>Nothing received in this window yet.</p>"


def refusals(memory: Dict[str, Any]) -> str:
    """A warning of what the store refused (``memory``: its ``size()``), or "", so that the
    page does not look complete when it is not."""
    said = []
    if memory.get("series_refused"):
        said.append(f"{memory['series_refused']:,} new series refused (the receiver keeps "
                    f"{memory.get('max_series', 0):,}, and none had been idle for an hour): "
                    "they are missing from these charts, and a metric whose flag was refused "
                    "is drawn as one line, \u2018all\u2019")
    if memory.get("variants_refused"):
        said.append(f"{memory['variants_refused']:,} evaluations of variants refused (past "
                    "the variant names kept per flag): they are in no flag's exposure")
    if not said:
        return ""
    return (f'<p class="bad refused"><strong>Memory full:</strong> {_e("; ".join(said))}. '
            "Restart the receiver to start afresh.</p>")


def exposure_figure(flag: Dict[str, Any], x_range: Tuple[float, float],
                    palette: Dict[str, str]) -> str:
    """The chart of each group's share of a flag's evaluations, and its table."""
    groups = sorted(flag["exposure"])
    series = {g: [(p["t"], p["exposure"].get(g, {}).get("share")) for p in flag["points"]]
              for g in groups}
    svg = line_chart(series, x_range, palette, lambda v: human(v, percent=True),
                     title=f"exposure of {flag['flag']}")
    rows = [(g, [f"{flag['exposure'][g]['evaluations']:,}",
                 human(flag["exposure"][g]["share"], percent=True)]) for g in groups]
    return figure(svg, "exposure: share of evaluations", {
        "flag": flag["flag"], "metric": "", "aggregation": "share"},
        ("evaluations", "share"), rows, palette)


def metric_figure(metric: Dict[str, Any], x_range: Tuple[float, float], palette: Dict[str, str],
                  *, drawn: Optional[str] = None, y_min: str = "zero", title: Optional[str] = None,
                  extra: Optional[Dict[str, str]] = None) -> str:
    """The chart of one metric's groups (drawing ``drawn``, by default what its type
    draws), with its table."""
    name, kind = metric["name"], metric["type"]
    aggregation, columns = DRAWN[kind]
    aggregation = drawn or aggregation
    rate = aggregation == "rate"
    series = {g: [(p["t"], p.get(aggregation)) for p in a["points"]]
              for g, a in metric["groups"].items()}
    svg = line_chart(series, x_range, palette, lambda v: human(v, name, rate=rate),
                     y_min=y_min, title=title or name)
    rows = [(g, [_cell(name, column, a.get(column)) for column in columns])
            for g, a in sorted(metric["groups"].items())]
    caption = title or f"{name}: {_described(aggregation)}"
    attributes = {"flag": metric["flag"] or "", "metric": name, "aggregation": aggregation,
                  **(extra or {})}
    return figure(svg, caption, attributes, columns, rows, palette)


def figure(svg: str, caption: str, attributes: Dict[str, str], columns: Sequence[str],
           rows: List[Tuple[str, List[str]]], palette: Dict[str, str]) -> str:
    """A chart, its caption, and its table (a row per series, a colour swatch first)."""
    data = "".join(f' data-{k}="{_e(v)}"' for k, v in attributes.items())
    head = "".join(f"<th>{_e(c)}</th>" for c in ("", *columns))
    body = "".join(
        f'<tr data-series="{_e(group)}"><td><span class="swatch" style="background:'
        f'{palette.get(group, "#333")}"></span>{_e(group)}</td>'
        + "".join(f"<td class=n>{_e(v)}</td>" for v in values) + "</tr>"
        for group, values in rows)
    return (f'<figure class="chart"{data}><figcaption>{_e(caption)}</figcaption>{svg}'
            f'<table class="values"><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table></figure>")


def _cell(name: str, column: str, value: Any) -> str:
    if column in ("increase", "count"):
        return human(value, "" if column == "count" else name)
    return human(value, name, rate=column == "rate")


def _described(aggregation: str) -> str:
    return {"rate": "rate per second", "average": "average", "share": "share",
            "increase": "increase per step", "last": "last value"}.get(
                aggregation, aggregation)


def _e(value: Any) -> str:
    return html.escape(str(value))
