"""A flush that fails while building its bodies keeps what it collected.

The failure is injected where a real one happens, in the function that turns a snapshot
into bodies (``Delivery(build=...)``), against a real local server.
"""

from __future__ import annotations

import logging
import time

from impactagent.core.payload import Identity, build_payloads
from impactagent.core.recorder import Recorder
from impactagent.core.statistics import DeliveryLedger
from impactagent.delivery.delivery import Delivery
from impactagent.delivery.transport import HttpTransport
from tests.scripted_server import ScriptedServer


def failing_once():
    calls = []

    def build(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise TypeError("Object of type Decimal is not JSON serializable")
        return build_payloads(*args, **kwargs)

    return build


def make_delivery(url, build):
    recorder = Recorder()
    identity = Identity.create("shop")
    transport = HttpTransport(url + "/client/metrics", "t", identity, flush_interval=60)
    delivery = Delivery(recorder, transport, identity=identity, request_timeout=2,
                        max_payload_bytes=95_000, ledger=DeliveryLedger(),
                        drops=recorder.drops, build=build)
    return recorder, delivery


def test_a_failing_build_restores_the_snapshot_and_the_next_flush_sends_it(caplog):
    with ScriptedServer() as server:
        recorder, delivery = make_delivery(server.api_url, failing_once())
        recorder.metrics.counter("jobs_total", "Jobs").inc(1000)
        recorder.flags.record("new-checkout", True, "blue")
        with caplog.at_level(logging.ERROR, logger="impactagent"):
            failed = delivery.flush(time.monotonic() + 5)
        assert failed.skipped.startswith("building bodies failed (TypeError)")
        assert recorder.pending_events() == 1001  # nothing lost
        assert delivery.ledger.as_dict()["flush_errors"] == 1
        assert "kept for the next flush" in caplog.text
        assert server.requests == []

        assert delivery.flush(time.monotonic() + 5).ok
        totals = server.totals()
        assert sum(totals["counters"].values()) == 1000
        assert totals["flags"]["new-checkout"] == {"yes": 1, "no": 0, "variants": {"blue": 1}}
        assert recorder.drops.as_dict() == {}


def test_a_build_that_fails_at_close_counts_what_it_held(caplog):
    def always_failing(*args, **kwargs):
        raise TypeError("a bug")

    with ScriptedServer() as server:
        recorder, delivery = make_delivery(server.api_url, always_failing)
        recorder.metrics.counter("jobs_total", "Jobs").inc(7)
        with caplog.at_level(logging.ERROR, logger="impactagent"):
            result = delivery.close(time.monotonic() + 2)
        assert not result.ok
        assert recorder.drops.as_dict() == {"not_delivered_by_close": 7}
        assert recorder.pending_events() == 0


class _InterruptedOnce(HttpTransport):
    """A real transport whose second POST is cut by Ctrl-C (as a signal would cut it)."""

    posts = 0

    def post(self, body, timeout):
        self.posts += 1
        if self.posts == 2:
            raise KeyboardInterrupt
        return super().post(body, timeout)


def test_ctrl_c_while_sending_a_split_half_keeps_both_halves():
    import pytest

    with ScriptedServer(max_body=3000) as server:
        recorder = Recorder()
        identity = Identity.create("shop")
        transport = _InterruptedOnce(server.api_url + "/client/metrics", "t", identity,
                                     flush_interval=60)
        delivery = Delivery(recorder, transport, identity=identity, request_timeout=2,
                            max_payload_bytes=95_000, ledger=DeliveryLedger(),
                            drops=recorder.drops)
        users = recorder.metrics.counter("logins_total", "Logins", labels=("user",))
        for i in range(60):
            users.labels(user=f"user-{i:03d}").inc(i + 1)
        recorded = recorder.pending_events()
        with pytest.raises(KeyboardInterrupt):
            delivery.flush(time.monotonic() + 5)  # 413, split, then Ctrl-C on the first half
        assert server.totals()["counters"] == {}
        assert recorder.pending_events() == recorded  # both halves merged back
        assert delivery.flush(time.monotonic() + 10).ok
        assert sum(server.totals()["counters"].values()) == recorded
