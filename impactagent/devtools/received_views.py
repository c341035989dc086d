"""The receiver's page: the impact view's charts, then the tables of totals and the last
requests. It reloads itself every :data:`PAGE_REFRESH` seconds, keeping the scroll position
(a ``<meta>`` refresh without JavaScript).
"""

from __future__ import annotations

import html
import math
from typing import Any, Dict, Iterable, List, Optional, Sequence
from urllib.parse import parse_qs, urlencode

from ..core.charts import ChartConfig
from .declared import declared_section
from .impact import impact
from .impact_view import impact_section, palette_of
from .received import ReceivedMetrics

PAGE_REFRESH = 2
#: The impact view's window on the page, unless ``?window=`` says otherwise.
PAGE_WINDOW = 900.0
WINDOWS = ((300, "5 min"), (900, "15 min"), (3600, "1 hour"))


def page(received: ReceivedMetrics, url: str, *, window: Optional[float] = None,
         query: str = "", charts: Sequence[ChartConfig] = ()) -> str:
    """An HTML page of everything received, the impact view over the last ``window`` seconds
    and the ``charts`` declared in code; the page's links keep ``query`` (its token)."""
    view = impact(received.series, window or PAGE_WINDOW)
    palette = palette_of(view)
    declared = declared_section(received.series, charts, palette)
    links = " · ".join(
        f"<b>{name}</b>" if seconds == view["window_seconds"] else
        f'<a href="/?{html.escape(_with(query, window=str(seconds)))}">{name}</a>'
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
<p>Send metrics to <code>{html.escape(url)}/api</code>. {accepted} accepted.
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


def _failed_writes(failures: List[Dict[str, Any]]) -> str:
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


def _with(query: str, **changes: str) -> str:
    values = {k: v[-1] for k, v in parse_qs(query).items()}
    return urlencode({**values, **changes})


def _table(headers: Iterable[str], rows: Iterable[Iterable[Any]], name: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(
            f"<td class=n>{v}</td>" if isinstance(v, (int, float)) else
            f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in rows)
    return (f'<table id="{name}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body or '<tr><td>nothing yet</td></tr>'}</tbody></table>")


def _label_text(labels: Dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items())
                     if k not in ("appName", "environment"))


def _value_text(metric: Dict[str, Any]) -> str:
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
