"""``impactagent charts plan`` and ``apply``: make the server's charts match the code's, by
id; a chart the code does not declare is ``unmanaged`` and left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..core.charts import ChartConfig, ChartScope
from .client import AdminClient


@dataclass(frozen=True)
class Change:

    action: str  # "create", "update", "unchanged" or "unmanaged"
    config: ChartConfig
    differences: List[Tuple[str, Any, Any]] = field(default_factory=list)


def plan(admin: AdminClient, declared: Sequence[ChartConfig]) -> List[Change]:
    """Compare the declared charts with the server's, scope by scope."""
    changes: List[Change] = []
    scopes: Dict[ChartScope, List[ChartConfig]] = {}
    for config in declared:
        scopes.setdefault(config.scope, []).append(config)
    for scope, configs in scopes.items():
        current = {c.id: c for c in admin.charts(scope)}
        for config in configs:
            existing: Optional[ChartConfig] = current.pop(config.id, None)
            if existing is None:
                changes.append(Change("create", config))
            else:
                differences = config.differences(existing)
                changes.append(Change("update" if differences else "unchanged", config,
                                      differences))
        changes += [Change("unmanaged", other) for other in current.values()]
    return changes


def apply(admin: AdminClient, changes: Sequence[Change]) -> List[ChartConfig]:
    """Carry out the creates and updates of a plan; returns the server's answers."""
    return [admin.save_chart(change.config) for change in changes
            if change.action in ("create", "update")]


def describe(changes: Sequence[Change]) -> str:
    """A plan as text, one chart per line, the differences under each update."""
    lines = []
    for change in changes:
        config = change.config
        what = config.title or config.metric_name
        lines.append(f"{change.action:<10} {config.id}  {what} ({config.aggregation}, "
                     f"{config.time_range}) on {config.scope}")
        for name, ours, theirs in change.differences:
            lines.append(f"{'':<12}{name}: {theirs!r} -> {ours!r}")
    counts = {a: sum(c.action == a for c in changes)
              for a in ("create", "update", "unchanged", "unmanaged")}
    lines.append(", ".join(f"{n} to {a}" if a in ("create", "update") else f"{n} {a}"
                           for a, n in counts.items()))
    return "\n".join(lines)
