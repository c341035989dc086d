"""The receiver's page: the charts declared in code (previewed as Unleash draws them), the
impact view (per flag, its exposure and a chart per metric labelled by it, each a ``<figure
class="chart">`` with ``data-flag``, ``data-metric`` and ``data-aggregation``), then the tables
of totals and the last requests. It reloads itself every :data:`PAGE_REFRESH` seconds.
"""

from __future__ import annotations

import html
import math
from typing import Any, Iterable, Sequence
from urllib.parse import parse_qs, urlencode

from ..core.charts import ChartConfig
from .impact import impact
from .received import ReceivedMetrics
from .svg import colours, human, line_chart
from .timeseries import SeriesStore

PAGE_REFRESH = 2
#: The impact view's window on the page, unless ``?window=`` says otherwise.
PAGE_WINDOW = 900.0
WINDOWS = ((300, "5 min"), (900, "15 min"), (3600, "1 hour"))


def page(received: ReceivedMetrics, url: str, *, window: float | None = None,
         query: str = "", charts: Sequence[ChartConfig] = ()) -> str:
    """An HTML page of everything received, the impact view over the last ``window`` seconds
    and the ``charts`` declared in code; the page's links keep ``query`` (its token)."""
    view = impact(received.series, window or PAGE_WINDOW)
    palette = palette_of(view)
    declared = declared_section(received.series, charts, palette)
    kept = {k: v[-1] for k, v in parse_qs(query).items()}
    links = " · ".join(
        f"<b>{name}</b>" if seconds == view["window_seconds"] else
        f'<a href="/?{_e(urlencode({**kept, "window": seconds}))}">{name}</a>'
        for seconds, name in WINDOWS)
    data = received.as_json()
    flags = _table(("app", "environment", "hour (UTC)", "flag", "yes", "no", "variants"),
                   ((f["appName"], f["environment"], f["hour"], f["flag"], f["yes"], f["no"],
                     ", ".join(f"{k}: {v}" for k, v in sorted(f["variants"].items())))
                    for f in data["flags"]), "flags")
    metrics = _table(("app", "metric", "type", "labels", "value"),
                     ((m["appName"], m["name"], m["type"], _label_text(m["labels"]),
                       _value_text(m)) for m in data["metrics"]), "metrics")
    requests = _table(("time (UTC)", "app", "answer", "bytes", "problems"),
                      ((r["at"], r["appName"], r["status"], r["bytes"],
                        "; ".join(r["problems"]) or "none") for r in data["requests"][:50]),
                      "requests")
    accepted = f"{data['bodies_accepted']} bod{'y' if data['bodies_accepted'] == 1 else 'ies'}"
    failed = _failed_writes(data["failed_writes"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<noscript><meta http-equiv="refresh" content="{PAGE_REFRESH}"></noscript>
<title>impactagent receiver</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; }}
th {{ background: #f4f4f4; }} td.n {{ text-align: right; }}
.bad {{ color: #a00; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 1em 2em; }}
figure.chart {{ margin: 0 0 1em; }} figure.chart table {{ margin: 0.3em 0 0; }}
figcaption {{ font-weight: 600; margin-bottom: 0.2em; }}
.swatch {{ display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.4em; }}
section.flag h3 small {{ font-weight: normal; color: #666; }}
</style></head>
<body>
<h1>impactagent receiver</h1>
<p>Send metrics to <code>{_e(url)}/api</code>. {accepted} accepted.
Also as <a href="/api/received">JSON</a> and <a href="/metrics">Prometheus text</a>.
This page reloads every {PAGE_REFRESH} s.</p>
{failed}{declared}
<h2 id="impact">Impact, per flag and variant</h2>
<p>In 10-second steps over the last {links} (UTC), each body in the step it arrived in;
numbers also as <a href="/api/impact">JSON</a>. An agent sends every 60 s by default: for a
point every step while developing, set <code>IMPACTAGENT_FLUSH_INTERVAL=10</code>.</p>
<div id="impact-view">{impact_section(view, palette)}</div>
<h2>Flag counts</h2>{flags}
<h2>Impact metrics</h2>{metrics}
<h2>Last requests</h2>{requests}
<script>{_KEEP_SCROLL}</script>
</body></html>
"""


def _failed_writes(failures: list[dict[str, Any]]) -> str:
    if not failures:
        return ""
    rows = _table(("time (UTC)", "apps in the window", "lost", "why"),
                  ((f["at"], ", ".join(f["apps"]),
                    ", ".join(f"{k}: {v}" for k, v in sorted(f["lost"].items())) or "-",
                    "; ".join(f["reasons"])) for f in failures), "failed-writes")
    return (f'<h2 class="bad">A real server would have lost every app\'s data here</h2>'
            f"<p>It answers 202 to these bodies, then fails to write what it holds: every "
            f"app's counts of that write window are lost.</p>{rows}")


#: Reloads the page and puts its scroll position back, kept in the URL's fragment
#: (``#scroll=<pixels>`` names no element, so the browser does not jump).
_KEEP_SCROLL = f"""
(function () {{
  history.scrollRestoration = "manual";
  var saved = /^#scroll=([0-9]+)$/.exec(location.hash);
  if (saved) {{
    window.scrollTo(0, Number(saved[1]));
    document.documentElement.setAttribute("data-restored-scroll",
                                          String(Math.round(window.scrollY)));
  }}
  setTimeout(function () {{
    history.replaceState(null, "", location.pathname + location.search + "#scroll="
                         + Math.round(window.scrollY));
    location.reload();
  }}, {PAGE_REFRESH * 1000});
}})();"""


def _table(headers: Iterable[str], rows: Iterable[Iterable[Any]], name: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(
            f"<td class=n>{v}</td>" if isinstance(v, (int, float)) else
            f"<td>{_e(str(v))}</td>" for v in row) + "</tr>"
        for row in rows)
    return (f'<table id="{name}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body or '<tr><td>nothing yet</td></tr>'}</tbody></table>")


def _label_text(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())
                     if k not in ("appName", "environment"))


def _value_text(metric: dict[str, Any]) -> str:
    if metric["type"] != "histogram":
        return _number(metric["value"])
    return f"count {metric['count']}, sum {_number(metric['sum'])}"


def _number(value: Any) -> str:
    """A value for people: whole numbers whole, others to six significant digits.

    >>> [_number(v) for v in (3, 2.0, 0.1 + 0.2, 3.14159265, 1234567.5, 1.89200000022538e-06)]
    ['3', '2', '0.3', '3.14159', '1234568', '1.892e-06']
    """
    number = float(value)
    if not math.isfinite(number):
        return str(number)
    if number.is_integer():
        return str(int(number))
    if abs(number) < 1e-3:
        return f"{number:.4g}"
    decimals = max(0, 5 - math.floor(math.log10(abs(number))))
    return f"{number:.{decimals}f}".rstrip("0").rstrip(".")


_DESCRIBED = {"rate": "rate per second", "average": "average", "share": "share",
              "increase": "increase per step", "last": "last value"}
#: What each chart draws, by metric type: (aggregation drawn, columns of its table).
DRAWN = {"counter": ("rate", ("increase", "rate")),
         "gauge": ("average", ("last", "average")),
         "histogram": ("p95", ("p50", "p95", "p99", "mean", "count"))}


def palette_of(view: dict[str, Any]) -> dict[str, str]:
    """A colour for every group (variant, enabled, disabled, all) in ``view``."""
    return colours(sorted({g for f in view["flags"] for g in f["exposure"]}
                          | {g for m in view["metrics"] for g in m["groups"]}))


def impact_section(view: dict[str, Any], palette: dict[str, str]) -> str:
    """The HTML of the impact view for ``view`` (what :func:`.impact.impact` answers)."""
    x_range = (view["from"], view["to"])
    parts: list[str] = [refusals(view.get("memory", {}))]
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


def refusals(memory: dict[str, Any]) -> str:
    """A warning of what the store refused (``memory``: its ``size()``), or ""."""
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


def exposure_figure(flag: dict[str, Any], x_range: tuple[float, float],
                    palette: dict[str, str]) -> str:
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


def metric_figure(metric: dict[str, Any], x_range: tuple[float, float], palette: dict[str, str],
                  *, drawn: str | None = None, y_min: str = "zero", title: str | None = None,
                  extra: dict[str, str] | None = None) -> str:
    """The chart of one metric's groups (``drawn``, else its type's), with its table."""
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
    caption = title or f"{name}: {_DESCRIBED.get(aggregation, aggregation)}"
    attributes = {"flag": metric["flag"] or "", "metric": name, "aggregation": aggregation,
                  **(extra or {})}
    return figure(svg, caption, attributes, columns, rows, palette)


def figure(svg: str, caption: str, attributes: dict[str, str], columns: Sequence[str],
           rows: list[tuple[str, list[str]]], palette: dict[str, str]) -> str:
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


def _e(value: Any) -> str:
    return html.escape(str(value))


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


def _preview(store: SeriesStore, config: ChartConfig
             ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One declared chart's preview, and the impact view's metric it draws (None: none yet)."""
    kind, _, name = config.metric_name.removeprefix("unleash_").partition("_")
    kept = store.steps * store.step
    step = min(STEP_SECONDS[config.time_range], kept)
    shown = min(RANGE_SECONDS[config.time_range], kept)
    resolution = max(1, round(step / store.step))
    field = FIELDS.get(kind, {}).get(config.aggregation)
    result: dict[str, Any] = {
        "id": config.id, "title": config.title or name, "metric_name": config.metric_name,
        "metric": name, "type": kind, "time_range": config.time_range,
        "aggregation": config.aggregation, "field": field, "y_axis_min": config.y_axis_min,
        "label_selectors": {k: list(v) for k, v in config.label_selectors.items()},
        "scope": str(config.scope), "step_seconds": resolution * store.step,
        "window_seconds": RANGE_SECONDS[config.time_range], "shown_seconds": shown,
        "arrived": False, "flag": None, "groups": {}}
    if field is None:
        return result, None
    view = impact(store, shown, resolution=resolution, selectors=config.label_selectors)
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


def previews(store: SeriesStore, configs: Sequence[ChartConfig]) -> list[dict[str, Any]]:
    """Every declared chart's preview (for ``GET /api/charts``)."""
    return [_preview(store, config)[0] for config in configs]


def declared_section(store: SeriesStore, configs: Sequence[ChartConfig],
                     palette: dict[str, str]) -> str:
    """The page's section of declared charts (empty without any)."""
    if not configs:
        return ""
    figures = []
    for config in configs:
        shown, metric = _preview(store, config)
        attributes = {"chart": "declared", "metric-name": config.metric_name,
                      "time-range": config.time_range, "aggregation-mode": config.aggregation,
                      "y-axis-min": config.y_axis_min,
                      "arrived": "true" if shown["arrived"] else "false"}
        note = _note(shown)
        if metric is None:
            data = "".join(f' data-{k}="{_e(v)}"' for k, v in attributes.items())
            why = (f"no sample of {shown['type']} {shown['metric']!r} has arrived yet"
                   if shown["field"] else f"{config.aggregation} cannot be drawn for a "
                   f"{shown['type']}")
            if shown["field"] and config.label_selectors:
                why += f" with labels {shown['label_selectors']}"
            figures.append(f'<figure class="chart"{data}><figcaption>'
                           f'{_e(shown["title"])}</figcaption><p class="missing">'
                           f"{_e(why)}.</p>{note}</figure>")
            continue
        figure = metric_figure(metric, (shown["from"], shown["to"]), palette, drawn=shown["field"],
                               y_min=config.y_axis_min, extra=attributes,
                               title=f"{shown['title']}: {config.aggregation}")
        figures.append(figure.replace("</figure>", note + "</figure>"))
    return ('<h2 id="declared">Charts declared in code</h2><div class="charts">'
            + "".join(figures) + "</div>")


def _note(shown: dict[str, Any]) -> str:
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
    return f'<p class="note">{_e("; ".join(parts))}</p>'
