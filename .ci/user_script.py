"""A user's script, type-checked with ``mypy --strict`` after the README's editable install
(.ci/run): the package must be visible to type checkers, and its public API typed.

It is checked, not run."""

from __future__ import annotations

from UnleashClient.impact_metrics import MetricFlagContext

import impactagent
from impactagent.admin import AdminClient, InstanceStatistics
from impactagent.integrations.flask import ImpactAgent
from impactagent.integrations.gunicorn import worker_exit

agent = impactagent.Agent.from_env()
checkouts = agent.counter("checkout_total", "Completed checkouts", flags=("new-checkout",))
checkouts.inc()
latency = agent.histogram("checkout_seconds", "Checkout latency", labels=("route",))
latency.labels(route="/cart").observe(0.2)
agent.define_counter("orders_total", "Orders", flags=["new-checkout"])
agent.increment_counter("orders_total", 1, MetricFlagContext(flag_names=["new-checkout"]))


@agent.flag("new-checkout")
def new_checkout(user: str) -> bool:
    return user.startswith("beta-")


statistics: impactagent.Statistics = agent.statistics()
delivered: int = statistics["delivery"]["delivered_bodies"]
dropped: dict[str, int] = statistics["dropped"]
spooled: int = statistics.get("spool", {"files": 0, "bytes": 0})["files"]


def verified(url: str, token: str) -> bool:
    answer: InstanceStatistics = AdminClient(url, token).instance_statistics()
    return answer.verified


extension: type[ImpactAgent] = ImpactAgent
hook = worker_exit
