"""The seams: the user transport, the one Settings source, close() and the layer test.
Each test failed when it was written;
the defects are fixed, and the tests hold them fixed. One blind spot of the layer test is
kept as a strict xfail: it documents what the check cannot see (a private attribute read by
a module that has one of the same name), and CI notices if that changes.

The promise attacked: every count recorded is delivered exactly once or counted as dropped
with a reason, and the contracts written in impactagent/delivery/transport_api.py,
impactagent/delivery/settings.py and tests/test_layers.py.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import List, Optional

import pytest

from impactagent import Agent
from impactagent.delivery.settings import Settings
from impactagent.delivery.transport_api import DELIVERED, RETRY, BaseTransport, Outcome
from tests import test_layers

#: How long a test waits for something the flusher should do within a few 0.05 s intervals
#: (a bound on a wait that normally ends at once, not a timing assertion).
PATIENCE = 10.0


def counter_total(bodies: List[bytes], name: str) -> int:
    return sum(sample["value"] for body in bodies
               for metric in json.loads(body).get("impactMetrics", [])
               if metric["name"] == name for sample in metric["samples"])


class Switchable(BaseTransport):
    """Answers as ``mode`` says: ``retry`` (503), ``raise`` (a bug, or Ctrl-C), or deliver."""

    def __init__(self) -> None:
        self.mode = "deliver"
        self.bodies: List[bytes] = []
        self.lock = threading.Lock()
        self.delivered = threading.Event()

    def post(self, body: bytes, timeout: float) -> Outcome:
        if self.mode == "retry":
            return Outcome(RETRY, 503)
        if self.mode == "raise":
            raise RuntimeError("a transport bug")
        if self.mode == "interrupt":
            raise KeyboardInterrupt
        with self.lock:
            self.bodies.append(body)
        self.delivered.set()
        return Outcome(DELIVERED, 200)


# -- 1. a transport that raises while the spool is replayed strands the spooled body ----------

@pytest.mark.parametrize("failure", ["raise", "interrupt"])
def test_a_transport_failing_during_spool_replay_does_not_strand_the_body(tmp_path: Path,
                                                                          failure: str):
    transport = Switchable()
    agent = Agent("shop", transport=transport, spool_dir=str(tmp_path))
    agent.counter("checkout_total", "Checkouts").inc(5)
    transport.mode = "retry"
    assert agent.flush(1.0).kept_bodies == 1  # spooled: the server is "down"
    transport.mode = failure
    if failure == "interrupt":
        with pytest.raises(KeyboardInterrupt):
            agent.flush(1.0)  # Ctrl-C inside post, while the spooled body is replayed
    else:
        assert not agent.flush(1.0).ok  # a transport's bug is a failed send, not an error
    transport.mode = "deliver"
    agent.flush(1.0)
    agent.close(1.0)
    dropped = sum(agent.statistics()["dropped"].values())
    # Delivered once, or counted: the 5 increments must be somewhere.
    assert counter_total(transport.bodies, "checkout_total") + dropped == 5, (
        f"left claimed: {sorted(p.name for p in tmp_path.iterdir())}")


# -- 2. a Retry-After of inf (or 1e300) from a user transport kills the flusher ----------------

class RetryAfterOnce(Switchable):
    def __init__(self, retry_after: float) -> None:
        super().__init__()
        self.retry_after: Optional[float] = retry_after
        self.answered = threading.Event()

    def post(self, body: bytes, timeout: float) -> Outcome:
        if self.retry_after is not None:
            retry_after, self.retry_after = self.retry_after, None
            self.answered.set()
            return Outcome(RETRY, 503, retry_after=retry_after)
        return super().post(body, timeout)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("retry_after", [float("inf"), 1e300])
def test_a_huge_retry_after_from_a_user_transport_does_not_kill_the_flusher(retry_after: float):
    transport = RetryAfterOnce(retry_after)
    agent = Agent("shop", transport=transport, flush_interval=0.05, handle_sigterm=False)
    agent.counter("checkout_total", "Checkouts").inc(5)
    agent.start()
    try:
        assert transport.answered.wait(PATIENCE), "the flusher never posted"
        # Waiting out such a Retry-After is fine (HttpTransport would cap it at an hour);
        # dying of it is not. With the defect the thread ends right after that answer.
        flusher = agent.lifecycle.flusher
        assert flusher is not None
        for _ in range(30):
            assert flusher.running, "the flusher thread died"
            time.sleep(0.1)
    finally:
        agent.close(1.0)


# -- 3. a registration that answers something other than an Outcome kills the flusher --------

class RegistersBadly(Switchable):
    register_url = "memory://register"

    def register(self, body: bytes, timeout: float) -> Outcome:
        return None  # type: ignore[return-value]  # the hostile user's mistake


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_registration_answering_garbage_does_not_stop_the_metrics():
    transport = RegistersBadly()
    agent = Agent("shop", transport=transport, flush_interval=0.05, handle_sigterm=False)
    agent.counter("checkout_total", "Checkouts").inc(5)
    agent.start()
    try:
        assert transport.delivered.wait(PATIENCE), "no flush ever reached the transport"
    finally:
        agent.close(1.0)
    assert counter_total(transport.bodies, "checkout_total") == 5


# -- 4. close() called on the flusher thread (from inside post) raises instead of closing -----

class ClosesFromPost(Switchable):
    def __init__(self) -> None:
        super().__init__()
        self.agent: Optional[Agent] = None
        self.error: Optional[BaseException] = None
        self.inner_done = threading.Event()

    def post(self, body: bytes, timeout: float) -> Outcome:
        if self.agent is not None and not self.inner_done.is_set():
            try:
                self.agent.close(0.5)  # e.g. a transport giving up for good
            except BaseException as error:
                self.error = error
            finally:
                self.inner_done.set()
        return super().post(body, timeout)


def test_close_called_from_the_transport_on_the_flusher_thread_closes_the_agent():
    transport = ClosesFromPost()
    agent = Agent("shop", transport=transport, flush_interval=0.05, handle_sigterm=False)
    transport.agent = agent
    agent.counter("checkout_total", "Checkouts").inc(5)
    agent.start()
    try:
        assert transport.inner_done.wait(PATIENCE)
        assert transport.error is None, f"close() raised {transport.error!r}"
        with pytest.raises(RuntimeError, match="closed"):
            agent.start()  # closed for good: it cannot be started again
    finally:
        agent.close(1.0)


# -- 5. from_env takes a transport but still demands a url and a token ----------------------

def test_from_env_with_a_transport_needs_no_url_nor_token():
    transport = Switchable()
    agent = Agent.from_env({"UNLEASH_APP_NAME": "shop"}, transport=transport)
    agent.counter("checkout_total", "Checkouts").inc(2)
    agent.close(1.0)
    assert counter_total(transport.bodies, "checkout_total") == 2


# -- 6. Settings is frozen, but its proxies are the caller's dict ---------------------------

def test_settings_do_not_share_the_callers_proxies_dict():
    proxies = {"https": "http://proxy.internal:3128"}
    settings = Settings("shop", proxies=proxies)
    proxies["https"] = "http://somewhere-else:3128"
    assert settings.proxies == {"https": "http://proxy.internal:3128"}


# -- 7. a transport whose fork hook raises leaves the forked child without a flusher --------

class ForkHookBroken(Switchable):
    def reset_after_fork(self, identity: object) -> None:
        raise RuntimeError("a broken reset_after_fork")


def test_a_failing_fork_hook_of_the_transport_still_gives_the_child_a_flusher():
    transport = ForkHookBroken()
    agent = Agent("shop", transport=transport, flush_interval=0.05, handle_sigterm=False)
    counter = agent.counter("checkout_total", "Checkouts")
    agent.start()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: record, and say whether its flusher sent it
        try:
            counter.inc(7)
            sent = transport.delivered.wait(PATIENCE)
            os.write(write_end, b"sent" if sent else b"not sent")
        finally:
            os._exit(0)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            answer = pipe.read()
        os.waitpid(pid, 0)
    finally:
        agent.close(1.0)
    assert answer == b"sent", "the child's periodic flusher never sent its counts"


# -- 8. blind spots of the layer test's private-access rule ----------------------------------

def reach_ins(tmp_path: Path, source: str) -> List[str]:
    planted = tmp_path / "planted.py"
    planted.write_text(source)
    return test_layers.private_reach_ins(planted, tmp_path)


def test_the_reach_in_check_sees_a_read_of_a_name_the_module_also_defines(tmp_path: Path):
    found = reach_ins(tmp_path, (
        "class Mine:\n"
        "    def __init__(self, agent):\n"
        "        self._lock = None\n"
        "        self.other = agent.lifecycle.delivery._lock\n"))
    assert found, "agent.lifecycle.delivery._lock was not reported"


@pytest.mark.parametrize("read", ["getattr(agent, '_flags')", "vars(agent)['_flags']"])
def test_the_reach_in_check_sees_a_read_spelled_as_a_string(tmp_path: Path, read: str):
    assert reach_ins(tmp_path, f"def f(agent):\n    return {read}\n")


def test_the_layer_test_sees_an_import_spelled_as_a_string():
    planted = test_layers.PACKAGE / "core" / "_planted_by_the_attack_test.py"
    planted.write_text("import importlib\n\n"
                       "demo = importlib.import_module('impactagent.devtools.demo')\n")
    try:
        with pytest.raises(AssertionError, match=r"_planted_by_the_attack_test\.py"):
            test_layers.test_no_import_runs_against_the_layers()
    finally:
        planted.unlink()


# -- 9. a transport class (not an instance) passes the construction check --------------------

def test_a_transport_class_instead_of_an_instance_is_refused_at_construction():
    with pytest.raises(TypeError, match="transport"):
        Agent("shop", transport=Switchable)
