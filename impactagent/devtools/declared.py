"""The charts declared in code, previewed by the receiver (``impactagent receive --charts
MODULE:NAME``) as Unleash will draw them: a line per variant when a flag labels the metric,
else one, ``all``; a range longer than the hour the receiver keeps shows that hour.
"""

from __future__ import annotations

import html
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..core.charts import ChartConfig
from .impact import impact
from .impact_view import metric_figure
from .timeseries import SeriesStore

#: The step the server derives from each time range, in seconds, and the range's length.
STEP_SECONDS = {"hour": 60, "day": 900, "week": 10_800, "month": 86_400}
RANGE_SECONDS = {"hour": 3600, "day": 86_400, "week": 604_800, "month": 2_592_000}
#: The impact number each chart aggregation draws, by metric type.
FIELDS = {
    "counter": {"rps": "rate", "count": "increase", "avg": "rate", "sum": "increase"},
    "gauge": {"avg": "average", "sum": "total", "rps": "average", "count": "average"},
    "histogram": {"p50": "p50", "p95": "p95", "p99": "p99", "avg": "mean", "sum": "sum",
                  "count": "count", "rps": "count"},
}


def _preview(store: SeriesStore, config: ChartConfig, now: Optional[float]
             ) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
    """One declared chart's preview, and the impact view's metric it draws (None: none yet)."""
    kind, _, name = config.metric_name.removeprefix("unleash_").partition("_")
    kept = store.steps * store.step
    step = min(STEP_SECONDS[config.time_range], kept)
    shown = min(RANGE_SECONDS[config.time_range], kept)
    resolution = max(1, round(step / store.step))
    field = FIELDS.get(kind, {}).get(config.aggregation)
    result: Dict[str, Any] = {
        "id": config.id, "title": config.title or name, "metric_name": config.metric_name,
        "metric": name, "type": kind, "time_range": config.time_range,
        "aggregation": config.aggregation, "field": field, "y_axis_min": config.y_axis_min,
        "label_selectors": {k: list(v) for k, v in config.label_selectors.items()},
        "scope": str(config.scope), "step_seconds": resolution * store.step,
        "window_seconds": RANGE_SECONDS[config.time_range], "shown_seconds": shown,
        "arrived": False, "flag": None, "groups": {}}
    if field is None:
        return result, None
    view = impact(store, shown, now, resolution=resolution, selectors=config.label_selectors)
    found = [m for m in view["metrics"] if m["name"] == name and m["type"] == kind]
    if config.scope.flag is not None:
        found = [m for m in found if m["flag"] == config.scope.flag] or found
    if not found:
        return result, None
    metric = found[0]
    result.update(arrived=True, flag=metric["flag"], groups={
        group: {"value": aggregation[field],
                "points": [[p["t"], p[field]] for p in aggregation["points"]]}
        for group, aggregation in metric["groups"].items()},
        **{"from": view["from"], "to": view["to"]})
    return result, metric


def previews(store: SeriesStore, configs: Sequence[ChartConfig],
             now: Optional[float] = None) -> List[Dict[str, Any]]:
    """Every declared chart's preview (for ``GET /api/charts``)."""
    return [_preview(store, config, now)[0] for config in configs]


def declared_section(store: SeriesStore, configs: Sequence[ChartConfig],
                     palette: Dict[str, str], now: Optional[float] = None) -> str:
    """The page's section of declared charts (empty without any)."""
    if not configs:
        return ""
    figures = []
    for config in configs:
        shown, metric = _preview(store, config, now)
        attributes = {"chart": "declared", "metric-name": config.metric_name,
                      "time-range": config.time_range,
                      "aggregation-mode": config.aggregation,
                      "y-axis-min": config.y_axis_min,
                      "arrived": "true" if shown["arrived"] else "false"}
        note = _note(shown)
        if metric is None:
            data = "".join(f' data-{k}="{html.escape(v)}"' for k, v in attributes.items())
            why = (f"no sample of {shown['type']} {shown['metric']!r} has arrived yet"
                   if shown["field"] else f"{config.aggregation} cannot be drawn for a "
                   f"{shown['type']}")
            if shown["field"] and config.label_selectors:
                why += f" with labels {shown['label_selectors']}"
            figures.append(f'<figure class="chart"{data}><figcaption>'
                           f'{html.escape(shown["title"])}</figcaption><p class="missing">'
                           f"{html.escape(why)}.</p>{note}</figure>")
            continue
        figure = metric_figure(
            metric, (shown["from"], shown["to"]), palette, drawn=shown["field"],
            y_min=config.y_axis_min, title=f"{shown['title']}: {config.aggregation}",
            extra=attributes)
        figures.append(figure.replace("</figure>", note + "</figure>"))
    return ('<h2 id="declared">Charts declared in code</h2><div class="charts">'
            + "".join(figures) + "</div>")


def _note(shown: Dict[str, Any]) -> str:
    """The configuration in words, and how much of its range is shown."""
    parts = [f"{shown['time_range']} ({shown['scope']}), {shown['aggregation']}, "
             f"y from {shown['y_axis_min']}"]
    if shown["label_selectors"]:
        parts.append("labels " + ", ".join(f"{k} in {v}" for k, v in
                                           sorted(shown["label_selectors"].items())))
    if shown["shown_seconds"] < shown["window_seconds"]:
        step = shown["step_seconds"]
        parts.append("the receiver keeps the last hour: shown in "
                     + (f"{step / 60:g}-minute" if step >= 60 else f"{step:g}-second")
                     + " steps")
    return f'<p class="note">{html.escape("; ".join(parts))}</p>'
