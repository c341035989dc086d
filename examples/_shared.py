"""What the three example apps share: an agent, one flag, and a metric labelled by it.

The agent sends to Unleash when ``UNLEASH_URL`` and ``UNLEASH_API_TOKEN`` are set, and only
records otherwise (the Prometheus scrape at ``/metrics`` shows what it recorded either way).
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import impactagent

#: Request metrics and checkouts are both split by the state of this flag in the request.
FLAGS = ("new-checkout",)


def instrumented(app_name: str) -> SimpleNamespace:
    """``agent``, the ``checkouts`` counter and the ``new_checkout`` flag function."""
    agent = impactagent.Agent(
        os.environ.get("UNLEASH_APP_NAME", app_name),
        url=os.environ.get("UNLEASH_URL"),
        api_key=os.environ.get("UNLEASH_API_TOKEN"),
    )
    if agent.settings.url:
        agent.start()
    checkouts = agent.counter("checkout_total", "Completed checkouts", flags=FLAGS)

    @agent.flag("new-checkout")
    def new_checkout(user: str):
        """Decide the flag (a real app asks its Unleash SDK): beta users get a variant."""
        if user.startswith("beta-"):
            return {"name": "blue", "enabled": True, "feature_enabled": True}
        return False

    return SimpleNamespace(agent=agent, checkouts=checkouts, new_checkout=new_checkout)
