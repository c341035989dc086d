"""An OpenFeature hook that counts every completed flag evaluation, with its variant, for
Unleash and notes its state: ``api.add_hooks([ImpactHook(agent)])``. An evaluation that ends
in an error (the default value returned) is not counted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from openfeature.flag_evaluation import Reason
from openfeature.hook import Hook

from ..core.flags import variant_name

if TYPE_CHECKING:
    from ..agent import Agent


class ImpactHook(Hook):
    """Counts evaluations on an :class:`impactagent.Agent`."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def after(self, hook_context: Any, details: Any, hints: Any) -> None:
        if details.error_code is not None:
            return
        value = details.value
        # A boolean flag's value is its answer; any other type is on unless disabled.
        enabled = value if isinstance(value, bool) else details.reason != Reason.DISABLED
        self.agent.count_evaluation(details.flag_key, enabled, variant_name(details.variant))
