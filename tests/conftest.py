"""Fixtures shared by the test modules."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.scripted_server import ScriptedServer


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    """A scripted Unleash server on 127.0.0.1 (tests/scripted_server.py), stopped after."""
    with ScriptedServer() as running:
        yield running


@pytest.fixture(autouse=True)
def _stop_workers_views(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Stop every workers view a test made, when it ends: a view's publishing thread lives
    as long as the process (as it should in a worker), and one left from an earlier test
    would publish into a directory that test removed, logging into a later test's caplog."""
    import impactagent

    made = []
    make = impactagent.Agent.prometheus_workers

    def tracked(agent, *args, **kwargs):  # type: ignore[no-untyped-def]
        view = make(agent, *args, **kwargs)
        made.append(view)
        return view

    monkeypatch.setattr(impactagent.Agent, "prometheus_workers", tracked)
    yield
    for view in made:
        view.stop()
