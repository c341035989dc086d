"""The receiver's page writes numbers for people: a histogram's sum of float observations
carries binary noise (``1.89200000022538e-06``) that the page rounds away."""

from __future__ import annotations

import re

import requests

import impactagent
from impactagent.devtools.receiver import Receiver


def test_the_page_rounds_sums_and_values_for_people():
    with Receiver() as receiver:
        agent = impactagent.Agent("shop", url=receiver.api_url,
                                  api_key="default:production.numbers")
        latency = agent.histogram("latency_seconds", "Latency")
        for seconds in (0.1, 0.2):  # 0.1 + 0.2 is 0.30000000000000004 in binary floats
            latency.observe(seconds)
        tiny = agent.histogram("tiny_seconds", "Tiny")
        for seconds in (1.892e-06, 2.2538e-16):
            tiny.observe(seconds)
        agent.gauge("ratio", "Ratio").set(2 / 3)
        agent.gauge("depth", "Depth").set(7)
        assert agent.close().ok
        with requests.Session() as http:
            http.trust_env = False
            page = http.get(receiver.url + "/", timeout=10).text
    values = dict(re.findall(r"<td>(latency_seconds|tiny_seconds|ratio|depth)</td>"
                             r"(?:<td[^>]*>[^<]*</td>){2}<td[^>]*>([^<]*)</td>", page))
    assert values == {"latency_seconds": "count 2, sum 0.3",
                      "tiny_seconds": "count 2, sum 1.892e-06",
                      "ratio": "0.666667", "depth": "7"}
