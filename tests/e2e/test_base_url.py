"""The server's base URL, without ``/api``, as people copy it from the browser: the agent
delivers with it, where a POST to ``{base}/client/metrics`` would be answered 403 with a
message that blames the token (measured on unleash-server 8.2.0)."""

from __future__ import annotations

import time
from typing import Tuple

import requests

from impactagent import Agent
from tests.e2e.conftest import RealServer
from tests.workload import FLAGS


def test_the_trap_the_base_url_falls_into_without_normalising(unleash: RealServer) -> None:
    answer = requests.post(unleash.url + "/client/metrics", timeout=10, json={},
                           headers={"Authorization": unleash.backend_token})
    assert answer.status_code == 403 and "token" in answer.text


def test_an_agent_given_the_base_url_delivers(unleash: RealServer) -> None:
    unleash.wait_until_flags_are_known()
    agent = Agent("e2e-base-url", url=unleash.url + "/", api_key=unleash.backend_token,
                  flush_interval=3600, register=False, handle_sigterm=False)
    counter = agent.counter("e2e_base_url_total", "Counted through the base URL")
    counter.inc(3)
    agent.record_flag(FLAGS[0], True)
    try:
        result = agent.flush(timeout=10)
    finally:
        agent.close(timeout=5)
    assert result.ok and result.delivered_bodies == 1, result

    def stored() -> Tuple[int, int]:
        totals = unleash.admin.totals("e2e-base-url", (FLAGS[0],))
        return (totals["flags"].get(FLAGS[0], {}).get("yes", 0),
                sum(value for (name, _labels), value in totals["counters"].items()
                    if name == "e2e_base_url_total"))

    # The server writes its buffered flag counts about every 5 s: asked twice a second, 30 s.
    deadline = time.monotonic() + 30
    while stored() != (1, 3) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stored() == (1, 3)
