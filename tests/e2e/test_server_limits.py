"""The three limits past which unleash-server answers 202 and then loses a whole write window.

The server keeps flag counts in memory and writes them about every 5 s, one statement for
every app's yes/no and one for every app's variant counts. A body that makes a statement
fail loses what every app sent in that window. Each case here puts canary apps' bodies
just before and just after the body under test (so one of them shares its window whatever
the server's timer does), then reads what the server stored:

- the old agent's bodies (sent raw, as it built them) lose a canary's counts;
- what the agent builds now never does, and the agent itself loses nothing: what does
  not fit its share of the server's row of an hour waits in it for the next hour.
"""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, List

import pytest
import requests

import impactagent
from impactagent.core.flags import HOUR_SHARE as SHARE
from impactagent.core.flags import ToggleDelta
from impactagent.core.server_limits import MAX_VARIANT_COUNT, OBJECT_PROTOTYPE_PROPERTIES
from impactagent.core.snapshot import Snapshot
from impactagent.delivery.settings import SettingsError
from tests import workload
from tests.e2e.conftest import RealServer
from tests.e2e.readback import SERVER_WRITE_PERIOD
from tests.e2e.stack import install_server

FLAG = workload.FLAGS[0]
MAX = MAX_VARIANT_COUNT
#: One day of an outage at 25,000 evaluations a second, merged back in the agent.
DAY = 25_000 * 86_400


def body(app: str, *, stop: datetime, yes: int = 1, variants: Dict[str, int] | None = None
         ) -> Dict[str, Any]:
    when = stop.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {"appName": app, "instanceId": "limits", "environment": "development",
            "bucket": {"start": when, "stop": when,
                       "toggles": {FLAG: {"yes": yes, "no": 0, "variants": variants or {}}}}}


class Window:
    """Canary apps around what a test sends, and what the server then stored for them."""

    def __init__(self, unleash: RealServer, name: str) -> None:
        self.unleash = unleash
        self.name = name
        self.windows = 0
        self.session = requests.Session()
        self.session.trust_env = False  # loopback only
        self.headers = {"Authorization": unleash.backend_token,
                        "Content-Type": "application/json"}

    def post(self, document: Dict[str, Any]) -> int:
        return self.session.post(f"{self.unleash.url}/api/client/metrics",
                                 data=json.dumps(document), headers=self.headers,
                                 timeout=10).status_code

    def around(self, send: Callable[[], Any]) -> List[Dict[str, Any]]:
        """Canary, ``send()``, canary, all within milliseconds; then each canary's stored
        counts, once the server has written that window."""
        self.windows += 1
        canaries = [f"e2e-limits-{self.name}-{self.windows}-canary-{when}"
                    for when in ("before", "after")]
        now = datetime.now(timezone.utc)
        assert self.post(body(canaries[0], stop=now, variants={"a": 1})) == 202
        send()
        assert self.post(body(canaries[1], stop=now, variants={"a": 1})) == 202
        time.sleep(SERVER_WRITE_PERIOD + 2)
        return [self.stored(app) for app in canaries]

    def stored(self, app: str) -> Dict[str, Any]:
        return self.unleash.admin.flag_counts(FLAG, app)


ONE = {"yes": 1, "no": 0, "variants": {"a": 1}}


def a_window_was_lost(canaries: List[Dict[str, Any]]) -> bool:
    return any(canary != ONE for canary in canaries)


def away_from_the_hour() -> datetime:
    """Now, at least 40 s before the next hour (the agent's windows must share an hour)."""
    now = datetime.now(timezone.utc)
    if now.minute == 59 and now.second >= 20:
        time.sleep(61 - now.second)
    return datetime.now(timezone.utc)


# -- variant counts: per app, flag, variant and hour, a 32-bit row ------------------------------

def backlogged(unleash: RealServer, app: str) -> impactagent.Agent:
    """An agent of ``app`` holding a day of evaluations of variant blue: failed flushes
    merged back (recording them one by one would take minutes)."""
    agent = unleash.agent(app)
    agent.record_flag(FLAG, True, "blue")
    failed = agent.collect()
    agent.recorder.restore(failed)
    agent.recorder.restore(Snapshot(failed.start, failed.stop,
                                    {FLAG: ToggleDelta(DAY - 1, 0, {"blue": DAY - 1})}, ()))
    return agent


def test_a_variant_count_past_2_31_loses_the_window_and_the_agents_fit_the_hour(
        unleash: RealServer) -> None:
    window = Window(unleash, "variants")
    stop = away_from_the_hour()
    old = body("e2e-limits-old-variants", stop=stop, yes=DAY, variants={"blue": DAY})
    assert a_window_was_lost(window.around(lambda: window.post(old)))

    app = "e2e-limits-variants"
    first, restarted = backlogged(unleash, app), backlogged(unleash, app)
    try:
        assert window.around(lambda: first.flush(timeout=10)) == [ONE, ONE]
        # Its share of the hour's row, with as many evaluations; the rest of the day waits.
        share = {"yes": SHARE, "no": 0, "variants": {"blue": SHARE}}
        assert window.stored(app) == share
        first.record_flag(FLAG, True, "blue")  # its share is used: blue waits
        assert window.around(lambda: first.flush(timeout=10)) == [ONE, ONE]
        assert window.stored(app) == share
        assert first.recorder.pending_events() == DAY + 1 - SHARE
        # Another process of the app (a worker, a restart) with a backlog of its own:
        # the row has room for it (filled whole by the first, it would have failed).
        assert window.around(lambda: restarted.flush(timeout=10)) == [ONE, ONE]
        assert window.stored(app) == {"yes": 2 * SHARE, "no": 0,
                                      "variants": {"blue": 2 * SHARE}}
        assert first.statistics()["dropped"] == restarted.statistics()["dropped"] == {}
    finally:
        for agent in (first, restarted):
            agent.close(timeout=1)


def test_a_later_window_of_the_same_hour_can_take_the_row_past_2_31(unleash: RealServer
                                                                     ) -> None:
    # Not only one body: the server adds each window to its row of the hour.
    window = Window(unleash, "hour")
    stop = away_from_the_hour()
    app = "e2e-limits-hour"
    assert window.post(body(app, stop=stop, variants={"blue": MAX - 10})) == 202
    deadline = time.monotonic() + 20
    while window.stored(app)["variants"] != {"blue": MAX - 10}:
        assert time.monotonic() < deadline, "the first window was not written"
        time.sleep(0.5)
    assert a_window_was_lost(window.around(
        lambda: window.post(body(app, stop=stop, variants={"blue": 20}))))
    assert window.stored(app)["variants"] == {"blue": MAX - 10}


# -- app names: varchar(255), no NUL ----------------------------------------------------------

@pytest.mark.parametrize("app", ["x" * 256, "shop\u0000eu"])
def test_an_app_name_the_server_cannot_store_loses_the_window_and_is_refused(
        unleash: RealServer, app: str) -> None:
    window = Window(unleash, f"app-{len(app)}")
    stop = datetime.now(timezone.utc)
    assert a_window_was_lost(window.around(lambda: window.post(body(app, stop=stop))))
    with pytest.raises(SettingsError, match="app_name must"):
        impactagent.Agent(app, url=unleash.url + "/api", api_key=unleash.backend_token)


def test_an_app_name_of_255_characters_is_stored(unleash: RealServer) -> None:
    window = Window(unleash, "app-255")
    app = "e2e-limits-" + "\u00e9" * 244  # 255 characters, 499 bytes of UTF-8
    agent = unleash.agent(app)
    agent.record_flag(FLAG, True, "blue")
    try:
        assert window.around(lambda: agent.flush(timeout=10)) == [ONE, ONE]
    finally:
        agent.close(timeout=1)
    assert window.stored(app) == {"yes": 1, "no": 0, "variants": {"blue": 1}}


# -- variant names: Object.prototype's properties --------------------------------------------

def test_to_string_after_another_variant_in_a_window_loses_it_and_the_agent_never_sends_it(
        unleash: RealServer) -> None:
    # The server merges a window's bodies per app, flag and hour into a plain JavaScript
    # object: the second body's toString is added to Object.prototype.toString (a string
    # results), and the window's variant insert fails.
    window = Window(unleash, "prototype")
    stop = datetime.now(timezone.utc)
    old = [body("e2e-limits-old-tostring", stop=stop, variants={name: 1})
           for name in ("blue", "toString")]
    assert a_window_was_lost(window.around(lambda: [window.post(b) for b in old]))

    agent = unleash.agent("e2e-limits-tostring")
    answers = iter(["blue", "toString"])

    @agent.flag(FLAG)
    def decide() -> str:
        return next(answers)

    with pytest.raises(ValueError, match="Object"):
        agent.record_flag(FLAG, True, "toString")

    def two_bodies() -> None:
        for _ in range(2):
            decide()
            agent.flush(timeout=10)

    try:
        assert window.around(two_bodies) == [ONE, ONE]
    finally:
        agent.close(timeout=1)
    assert window.stored("e2e-limits-tostring") == {"yes": 2, "no": 0, "variants": {"blue": 1}}


def test_an_ordinary_body_loses_no_window(unleash: RealServer) -> None:
    # The control: the canaries and their read-back see a window that was written.
    window = Window(unleash, "control")
    stop = datetime.now(timezone.utc) - timedelta(seconds=1)
    assert window.around(lambda: window.post(body("e2e-limits-control", stop=stop))) == [
        ONE, ONE]
    assert window.stored("e2e-limits-control") == {"yes": 1, "no": 0, "variants": {}}


def test_the_refused_names_are_object_prototypes_own_in_the_servers_node() -> None:
    install = install_server()
    node = install / "node_modules" / ".bin" / "node"
    names = subprocess.run(
        [str(node), "-e", "console.log(JSON.stringify(Object.getOwnPropertyNames("
                          "Object.prototype)))"],
        capture_output=True, check=True, timeout=60).stdout
    assert set(json.loads(names)) == OBJECT_PROTOTYPE_PROPERTIES
