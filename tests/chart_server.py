"""A local stand-in for Unleash Enterprise's impact-metrics chart API, built from the seed's
request and response contract (the chart API is not in the open-source server).

- ``POST /api/admin/impact-metrics/config`` and
  ``POST /api/admin/projects/{project}/features/{flag}/impact-metrics/config`` take the
  seed's request (``metricName``, ``timeRange``, ``yAxisMin``, ``aggregationMode``,
  ``labelSelectors`` required; ``id``, ``title``, ``source`` optional), answer 400 for a
  missing field, a bad enum or an id that is not a ULID, create (a new ULID when no id is
  given) or update by id, and answer the seed's response (``displayName``, ``step``,
  ``mode`` added).
- ``GET`` on the same paths lists ``{"configs": [...]}``; ``DELETE .../{id}`` removes one.
- Anything without the admin token: 401.
"""

from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Tuple

import ulid

from tests.loopback import LoopbackHandler, LoopbackServer

ENUMS = {"timeRange": ("hour", "day", "week", "month"),
         "aggregationMode": ("rps", "count", "avg", "sum", "p50", "p95", "p99"),
         "yAxisMin": ("auto", "zero"), "source": ("internal", "external")}
REQUIRED = ("metricName", "timeRange", "yAxisMin", "aggregationMode", "labelSelectors")
STEP = {"hour": "1m", "day": "15m", "week": "3h", "month": "1d"}
ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}\Z")
SCOPE = re.compile(r"/api/admin/(?:projects/([^/]+)/features/([^/]+)/)?impact-metrics/config"
                   r"(?:/([^/]+))?\Z")


class ChartServer(LoopbackServer):
    """Holds chart configurations per scope; ``requests`` logs (method, path) pairs."""

    def __init__(self, admin_token: str) -> None:
        self.admin_token = admin_token
        self.configs: Dict[Tuple[Any, Any], Dict[str, Dict[str, Any]]] = {}
        self.requests: List[Tuple[str, str]] = []
        super().__init__()

    @property
    def handler_class(self) -> type:  # type: ignore[override]
        return _ChartHandler

    def all_configs(self) -> List[Dict[str, Any]]:
        with self.lock:
            return [dict(c) for scope in self.configs.values() for c in scope.values()]


class _ChartHandler(LoopbackHandler):
    server_ref: ChartServer

    def _route(self) -> Any:
        server = self.server_ref
        with server.lock:
            server.requests.append((self.command, self.path))
        if self.headers.get("Authorization") != server.admin_token:
            self._json(401, {"message": "an admin token is required"})
            return None
        match = SCOPE.match(self.path.split("?")[0])
        if match is None:
            self._json(404, {"message": f"no route {self.path}"})
            return None
        return (match.group(1), match.group(2)), match.group(3)

    def do_GET(self) -> None:
        routed = self._route()
        if routed is not None:
            with self.server_ref.lock:
                configs = list(self.server_ref.configs.get(routed[0], {}).values())
            self._json(200, {"configs": configs})

    def do_DELETE(self) -> None:
        routed = self._route()
        if routed is not None:
            with self.server_ref.lock:
                removed = self.server_ref.configs.get(routed[0], {}).pop(routed[1], None)
            self._json(204 if removed else 404, {})

    def do_POST(self) -> None:
        body = self.read_body()
        routed = self._route()
        if routed is None:
            return
        try:
            request = json.loads(body)
        except ValueError:
            return self._json(400, {"message": "invalid JSON"})
        problems = [f"{name} is required" for name in REQUIRED if name not in request]
        problems += [f"{name} must be one of {allowed}" for name, allowed in ENUMS.items()
                     if name in request and request[name] not in allowed]
        if "id" in request and not ULID.match(str(request["id"])):
            problems.append("id must be a ULID")
        if problems:
            return self._json(400, {"message": "; ".join(problems)})
        config = {key: request[key] for key in (*REQUIRED, "title") if key in request}
        config["id"] = request.get("id") or str(ulid.new())
        config["source"] = request.get("source", "internal")
        config["displayName"] = re.sub(r"^unleash_(counter|gauge|histogram)_", "",
                                       request["metricName"])
        config["step"] = STEP[request["timeRange"]]
        config["mode"] = "write"
        with self.server_ref.lock:
            self.server_ref.configs.setdefault(routed[0], {})[config["id"]] = config
        self._json(200, config)

    def _json(self, status: int, answer: Dict[str, Any]) -> None:
        self.answer(status, json.dumps(answer).encode() if status != 204 else b"")
