"""The Unleash admin API calls impactagent makes: chart configurations (and a plan that makes
the server's match the code's, by id: a chart the code does not declare is ``unmanaged`` and
left alone) and instance statistics. The admin token is never logged or shown: what a server
answers is redacted first (a gateway may echo the request's headers)."""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from ..core.charts import ChartConfig, ChartScope
from ..delivery.redaction import Redactor, redact_url
from ..delivery.settings import api_url
from ..server_rules.jsvalues import js_string

_CHECKSUM_FIELDS = ("instanceId", "users", "featureToggles", "projects", "roles", "groups",
                    "environments", "segments")


class AdminError(RuntimeError):
    """The admin API answered something other than success (the message holds no secret)."""

    def __init__(self, method: str, url: str, status: int, detail: str) -> None:
        super().__init__(f"{method} {url} answered HTTP {status}: {detail}")
        self.status = status


def statistics_checksum(statistics: Mapping[str, Any]) -> str:
    """The ``sum`` (a SHA-256 of some fields) a server computes for these statistics.

    >>> statistics_checksum({"instanceId": "i", "users": 1, "featureToggles": 2,
    ...                      "projects": 3, "roles": 4, "groups": 5, "environments": 6,
    ...                      "segments": 7}) == hashlib.sha256(b"i1234567").hexdigest()
    True
    """
    values = {name: statistics.get(name) for name in _CHECKSUM_FIELDS}
    if isinstance(values["projects"], list):  # per-mode counts: the total
        values["projects"] = sum(int(p.get("count", 0)) for p in values["projects"])
    # A JavaScript template literal writes a missing field as "undefined".
    return hashlib.sha256("".join("undefined" if value is None else js_string(value)
                                  for value in values.values()).encode()).hexdigest()


@dataclass(frozen=True)
class InstanceStatistics:
    """Statistics as fetched, with the checksum they carry and the one recomputed."""

    data: dict[str, Any]
    checksum: str | None
    recomputed: str
    #: The answer as the server wrote it, when fetched as CSV.
    csv: str | None = None

    @property
    def verified(self) -> bool:
        """True when the statistics carry a checksum and it matches their content."""
        return self.checksum is not None and self.checksum == self.recomputed


class AdminClient:
    """Calls the admin API of an Unleash server at ``url`` (with or without ``/api``)."""

    def __init__(self, url: str, token: str, *, verify: bool | str = True,
                 timeout: float = 10.0) -> None:
        parts = urlsplit(api_url(url))
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"the url {redact_url(url)} has a user name or password in it, "
                             "which would replace the admin token in the Authorization "
                             "header: give the url without them")
        #: The server's base URL, without ``/api``.
        self.url = urlunsplit(parts._replace(path=parts.path[: -len("/api")], query="",
                                             fragment=""))
        self.timeout = timeout
        self.redact = Redactor.for_credentials(token, {})
        self.session = requests.Session()
        self.session.verify = verify
        # With an auth set (one that changes nothing), requests reads no ~/.netrc, whose entry
        # would replace the token.
        self.session.auth = lambda request: request
        self.session.headers.update({"Authorization": token, "Accept": "application/json",
                                     "User-Agent": "impactagent-admin"})

    def __repr__(self) -> str:  # never the token
        return f"<AdminClient {redact_url(self.url)}>"

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None,
                 accept: str = "application/json") -> requests.Response:
        url = self.url + path
        response = self.session.request(method, url, json=body, timeout=self.timeout,
                                        headers={"Accept": accept})
        if not response.ok:
            raise AdminError(method, redact_url(url), response.status_code,
                             self.redact.cut(response.text, 300))
        return response

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self._request(method, path, body)
        return response.json() if response.content else None

    def instance_statistics(self) -> InstanceStatistics:
        """Fetch the instance statistics and check their checksum."""
        data = self._call("GET", "/api/admin/instance-admin/statistics")
        if not isinstance(data, dict):
            raise ValueError(f"the statistics answer is not a JSON object but "
                             f"{type(data).__name__}: is the url an Unleash server?")
        return InstanceStatistics(data, data.get("sum"), statistics_checksum(data))

    def instance_statistics_csv(self) -> InstanceStatistics:
        """Fetch the instance statistics in CSV (kept in ``csv`` as sent) and check their
        checksum."""
        response = self._request("GET", "/api/admin/instance-admin/statistics/csv",
                                 accept="text/csv")
        kind = response.headers.get("Content-Type", "")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        if "csv" not in kind or len(rows) != 1:
            raise ValueError(f"the statistics CSV answer is {kind or 'untyped'} with {len(rows)} "
                             "row(s), not text/csv with one: is the url an Unleash server?")
        data: dict[str, Any] = dict(rows[0])
        return InstanceStatistics(data, data.get("sum"), statistics_checksum(data),
                                  csv=response.text)

    def charts(self, scope: ChartScope) -> list[ChartConfig]:
        """The chart configurations in ``scope`` (the instance, or one flag's)."""
        answer = self._call("GET", scope.path)
        # A list, plain or as {"configs": [...]}.
        items = answer.get("configs", []) if isinstance(answer, dict) else (answer or [])
        return [ChartConfig.from_answer(item, scope) for item in items]

    def save_chart(self, config: ChartConfig) -> ChartConfig:
        """Create or update (by ``id``) one chart configuration; returns the server's."""
        return ChartConfig.from_answer(self._call("POST", config.scope.path, config.request()),
                                       config.scope)

    def delete_chart(self, config: ChartConfig) -> None:
        """Delete one chart configuration (by ``id``)."""
        self._call("DELETE", f"{config.scope.path}/{config.id}")


@dataclass(frozen=True)
class Change:
    action: str  # "create", "update", "unchanged" or "unmanaged"
    config: ChartConfig
    differences: list[tuple[str, Any, Any]] = field(default_factory=list)


def plan(admin: AdminClient, declared: Sequence[ChartConfig]) -> list[Change]:
    """Compare the declared charts with the server's, scope by scope."""
    changes: list[Change] = []
    scopes: dict[ChartScope, list[ChartConfig]] = {}
    for config in declared:
        scopes.setdefault(config.scope, []).append(config)
    for scope, configs in scopes.items():
        current = {c.id: c for c in admin.charts(scope)}
        for config in configs:
            existing = current.pop(config.id, None)
            differences = [] if existing is None else config.differences(existing)
            action = "create" if existing is None else "update" if differences else "unchanged"
            changes.append(Change(action, config, differences))
        changes += [Change("unmanaged", other) for other in current.values()]
    return changes


def apply(admin: AdminClient, changes: Sequence[Change]) -> list[ChartConfig]:
    """Carry out the creates and updates of a plan; returns the server's answers."""
    return [admin.save_chart(change.config) for change in changes
            if change.action in ("create", "update")]


def describe(changes: Sequence[Change]) -> str:
    """A plan as text, one chart per line, the differences under each update."""
    lines = []
    for change in changes:
        config = change.config
        what = config.title or config.metric_name
        lines.append(f"{change.action:<10} {config.id}  {what} ({config.aggregation}, "
                     f"{config.time_range}) on {config.scope}")
        for name, ours, theirs in change.differences:
            lines.append(f"{'':<12}{name}: {theirs!r} -> {ours!r}")
    counts = {a: sum(c.action == a for c in changes)
              for a in ("create", "update", "unchanged", "unmanaged")}
    lines.append(", ".join(f"{n} to {a}" if a in ("create", "update") else f"{n} {a}"
                           for a, n in counts.items()))
    return "\n".join(lines)
