"""A stand-in for an Unleash server, for the zero-code tests: it serves a fixed
``GET /api/client/features`` and passes every ``POST`` (metrics, register) to the
development receiver, so the app's ``UnleashClient`` and impactagent report to one place,
as they would to one server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tests.loopback import LoopbackHandler, LoopbackServer

#: dark-mode: on for ann and bob. new-checkout: on for ann, bob, cat and dan, each of them
#: blue or green (the SDK decides, by userId); off for anyone else.
FEATURES = {"version": 1, "features": [
    {"name": "dark-mode", "type": "release", "project": "default", "enabled": True,
     "strategies": [{"name": "userWithId", "parameters": {"userIds": "ann,bob"}}]},
    {"name": "new-checkout", "type": "experiment", "project": "default", "enabled": True,
     "strategies": [{"name": "userWithId", "parameters": {"userIds": "ann,bob,cat,dan"}}],
     "variants": [
         {"name": "blue", "weight": 500, "weightType": "variable", "stickiness": "userId"},
         {"name": "green", "weight": 500, "weightType": "variable", "stickiness": "userId"}]},
]}


class UnleashStub(LoopbackServer):
    """``UnleashStub(receiver)``: point ``UNLEASH_URL`` at its ``api_url``."""

    receiver_api = ""  # set per instance: where POSTs go

    def __init__(self, receiver_api: str) -> None:
        self.receiver_api = receiver_api
        self.feature_fetches = 0
        super().__init__()

    class handler_class(LoopbackHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/api/client/features":
                self.answer(404, b"{}")
                return
            with self.server_ref.lock:
                self.server_ref.feature_fetches += 1
            self.answer(200, json.dumps(FEATURES).encode())

        def do_POST(self) -> None:
            body = self.read_body()
            target = self.server_ref.receiver_api + self.path.removeprefix("/api")
            headers = {name: value for name, value in self.headers.items()
                       if name.lower() not in ("host", "content-length", "connection")}
            request = urllib.request.Request(target, body, headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    status, reply = answer.status, answer.read()
            except urllib.error.HTTPError as error:
                status, reply = error.code, error.read()
            self.answer(status, reply)
