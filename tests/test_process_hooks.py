"""Fork and exit hooks hold their object weakly: they run on it while it lives, and neither
keep a closed agent, a stopped workers view or a closed bridge alive nor fail once it is
gone."""

from __future__ import annotations

import gc
import os
import time
import weakref

import pytest
from prometheus_client import CollectorRegistry

import impactagent
from impactagent.core.threads import weak_hook
from impactagent.integrations.prometheus_bridge import bridge_prometheus
from impactagent.prometheus.workers import WorkersView
from tests.loopback import refused_url


def collected(ref: weakref.ref, seconds: float = 5.0) -> bool:
    """Whether the object is gone within ``seconds`` (a stopped thread lets go of it late)."""
    deadline = time.monotonic() + seconds
    while ref() is not None and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.02)
    return ref() is None


def test_a_closed_agent_a_stopped_workers_view_and_a_closed_bridge_are_collected(tmp_path):
    agent = impactagent.Agent("shop", url=refused_url(), api_key="*:development.x",
                              register=False)
    agent.start()  # registers its exit and fork hooks
    lifecycle = weakref.ref(agent.lifecycle)
    view = WorkersView(impactagent.Agent("shop"), tmp_path)
    viewed = weakref.ref(view)
    bridge = bridge_prometheus(agent, families=["jobs"], registry=CollectorRegistry())
    bridged = weakref.ref(bridge)
    bridge.close()
    agent.close()
    view.stop()
    del agent, view, bridge
    assert collected(lifecycle) and collected(viewed) and collected(bridged)


class Marker:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def mark(self) -> None:
        os.write(self.fd, b"ran")


def fork_and_read(read: int) -> bytes:
    pid = os.fork()
    if pid == 0:
        os._exit(0)  # the fork hooks ran in the child before this line
    os.waitpid(pid, 0)
    os.set_blocking(read, False)
    try:
        return os.read(read, 16)
    except BlockingIOError:
        return b""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_fork_hook_runs_on_its_living_object_and_skips_a_gone_one():
    read, write = os.pipe()
    try:
        marker = Marker(write)
        os.register_at_fork(after_in_child=weak_hook(marker.mark))
        assert fork_and_read(read) == b"ran"
        gone = weakref.ref(marker)
        del marker
        assert collected(gone)
        assert fork_and_read(read) == b""
    finally:
        os.close(read)
        os.close(write)
