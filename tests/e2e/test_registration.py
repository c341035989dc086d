"""Registration against the real unleash-server 8.2.0: the application and its instance appear
in the admin API, as for an app using an official SDK.

The server keeps registrations in memory and writes them to the database every 20 s
(``bulkAddInstances``), so the test polls the admin API for up to a minute. The agents record
nothing: registration alone, with no metrics body (an empty window is not sent), makes the
application known.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Callable, Optional

import impactagent
from tests.e2e.conftest import RealServer

#: The server's bulkAddInstances period is 20 s: three of them, and some slack.
APPEAR_WITHIN = 70.0


def poll(probe: Callable[[], Optional[Any]], timeout: float = APPEAR_WITHIN) -> Optional[Any]:
    """Call ``probe()`` until it returns something other than None (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(1.0)


def test_the_agent_appears_as_an_application_with_its_instance(unleash: RealServer) -> None:
    app = f"registered-{uuid.uuid4().hex[:8]}"
    quiet_app = f"unregistered-{uuid.uuid4().hex[:8]}"
    agent = unleash.agent(app, flush_interval=2.0)
    quiet = unleash.agent(quiet_app, flush_interval=2.0, register=False)
    admin = unleash.admin.session
    agent.start()
    quiet.start()
    try:
        def instance() -> Optional[dict]:
            answer = admin.get(f"{unleash.url}/api/admin/metrics/instances/{app}"
                               f"/environment/development", timeout=10)
            answer.raise_for_status()
            mine = [i for i in answer.json()["instances"]
                    if i["instanceId"] == agent.identity.instance_id]
            return mine[0] if mine else None

        found = poll(instance)
        assert found is not None, f"no instance of {app} after {APPEAR_WITHIN} s: " \
                                  f"{agent.statistics()['delivery']['registration']}"
        assert found["sdkVersion"] == f"impactagent:{impactagent.__version__}"
        assert agent.statistics()["delivery"]["registration"]["registered"] is True
        assert agent.statistics()["delivery"]["delivered_bodies"] == 0  # nothing but register

        application = admin.get(f"{unleash.url}/api/admin/metrics/applications/{app}",
                                timeout=10)
        assert application.status_code == 200
        instances = application.json()["instances"]
        assert [i["instanceId"] for i in instances] == [agent.identity.instance_id]
        assert instances[0]["sdkVersion"] == f"impactagent:{impactagent.__version__}"
        listed = admin.get(f"{unleash.url}/api/admin/metrics/applications", timeout=10).json()
        assert app in {a["appName"] for a in listed["applications"]}

        # register=False, and nothing recorded: the other agent sent nothing at all.
        assert quiet.statistics()["delivery"]["registration"]["attempts"] == 0
        assert admin.get(f"{unleash.url}/api/admin/metrics/applications/{quiet_app}",
                         timeout=10).status_code == 404
        assert quiet_app not in {a["appName"] for a in listed["applications"]}
    finally:
        agent.close(timeout=5)
        quiet.close(timeout=5)
