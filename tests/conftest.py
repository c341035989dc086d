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
