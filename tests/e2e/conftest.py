"""The end-to-end session: one real Unleash server for all e2e tests, and a report at the end.

Tests get the ``unleash`` fixture (a :class:`RealServer`). Each test reports as its own app
(``app_name``), so its totals in the shared server are its own. At the end of the session a
table says, per scenario, what was recorded, what the server stored, and what was dropped
and why.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List

import pytest

from impactagent import Agent
from tests.e2e.readback import UnleashAdmin
from tests.e2e.stack import UnleashStack
from tests.workload import FLAGS

#: The flags `impactagent demo` evaluates (new-checkout is one of the workload's too).
DEMO_FLAGS = ("dark-mode",)

#: The server drops counts for flags it has known for less than about 10 s (it caches the
#: list of flag names), so flags are created at session start and the first POST waits.
FLAG_CACHE_SECONDS = 11.0


@dataclass
class ReportRow:
    scenario: str
    recorded: int  # flag evaluations + counter increments + histogram observations
    stored: int  # the same, summed from what the server holds
    possibly_duplicated: int  # the agent's own count of bodies it could not confirm
    dropped: Dict[str, int] = field(default_factory=dict)
    faults: Dict[str, int] = field(default_factory=dict)


REPORT: List[ReportRow] = []


@dataclass
class RealServer:
    """The running server, its admin API, and agents made to talk to it."""

    stack: UnleashStack
    admin: UnleashAdmin
    flags_known_at: float

    @property
    def url(self) -> str:
        assert self.stack.server is not None
        return self.stack.server.url

    @property
    def backend_token(self) -> str:
        assert self.stack.server is not None
        return self.stack.server.backend_token

    def wait_until_flags_are_known(self) -> None:
        time.sleep(max(0.0, self.flags_known_at - time.monotonic()))

    def agent(self, app_name: str, *, url: str | None = None, **options: Any) -> Agent:
        """An agent reporting as ``app_name`` to the server (or to ``url``, a proxy in front of
        it), once the server is sure to know the session's flags."""
        self.wait_until_flags_are_known()
        settings: Dict[str, Any] = {"api_key": self.backend_token, "flush_interval": 1.0,
                                    "request_timeout": 5.0, "shutdown_timeout": 10.0}
        settings.update(options)
        return Agent(app_name, url=(url or self.url) + "/api", **settings)


@pytest.fixture(scope="session")
def unleash() -> Iterator[RealServer]:
    with UnleashStack() as stack:
        assert stack.server is not None
        admin = UnleashAdmin(stack.server.url, stack.server.admin_token, stack.postgres)
        for flag in (*FLAGS, *DEMO_FLAGS):
            admin.create_flag(flag)
        yield RealServer(stack, admin, time.monotonic() + FLAG_CACHE_SECONDS)


def pytest_collection_modifyitems(items: List[pytest.Item]) -> None:
    for item in items:
        if "tests/e2e/" in item.nodeid:
            item.add_marker(pytest.mark.e2e)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not REPORT:
        return
    write = terminalreporter.write_line
    terminalreporter.section("impactagent against a real unleash-server 8.2.0")
    header = (f"{'scenario':<40} {'recorded':>9} {'stored':>9} {'dup?':>6}  "
              f"dropped (reason: events)")
    write(header)
    write("-" * len(header))
    for row in REPORT:
        dropped = ", ".join(f"{k}: {v}" for k, v in sorted(row.dropped.items())) or "none"
        write(f"{row.scenario:<40} {row.recorded:>9} {row.stored:>9} "
              f"{row.possibly_duplicated:>6}  {dropped}")
        if row.faults:
            write(f"{'':<40} faults: " + ", ".join(f"{k} x{v}" for k, v in row.faults.items()))
    write("recorded/stored: flag evaluations + counter increments + histogram observations; "
          "dup?: events the agent sent without hearing back (a resend may count them twice); "
          "dup? and dropped count a gauge sample as one event")
