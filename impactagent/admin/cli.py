"""``impactagent stats`` and ``impactagent charts plan|apply``. Charts match the code's by id;
one the code does not declare is ``unmanaged`` and left alone. The token comes from an
environment variable, never the command line, where ``ps`` would show it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests

from ..core.charts import ChartConfig, ChartScope
from ..delivery.redaction import redact_url
from ..devtools.agent_reference import load_agent
from ..devtools.cli_support import UsageError
from .client import AdminClient, AdminError


@dataclass(frozen=True)
class Change:
    action: str  # "create", "update", "unchanged" or "unmanaged"
    config: ChartConfig
    differences: list[tuple[str, Any, Any]] = field(default_factory=list)


def plan(admin: AdminClient, declared: Sequence[ChartConfig]) -> list[Change]:
    """Compare the declared charts with the server's, scope by scope."""
    changes: list[Change] = []
    scopes: dict[ChartScope, list[ChartConfig]] = {}
    for config in declared:
        scopes.setdefault(config.scope, []).append(config)
    for scope, configs in scopes.items():
        current = {c.id: c for c in admin.charts(scope)}
        for config in configs:
            existing = current.pop(config.id, None)
            differences = [] if existing is None else config.differences(existing)
            action = "create" if existing is None else "update" if differences else "unchanged"
            changes.append(Change(action, config, differences))
        changes += [Change("unmanaged", other) for other in current.values()]
    return changes


def apply(admin: AdminClient, changes: Sequence[Change]) -> list[ChartConfig]:
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


@contextmanager
def _admin(args: argparse.Namespace) -> Iterator[AdminClient]:
    """The admin client ``args`` ask for; what a wrong ``--url`` or token makes its calls
    raise, as one line without secrets."""
    if not args.url:
        raise UsageError("give the server with --url or $UNLEASH_URL")
    token = (os.environ.get(args.token_env) or "").strip()  # a copy may bring a line break
    if not token:
        raise UsageError(f"set ${args.token_env} to an admin token")
    if any(character.isspace() or not character.isprintable() for character in token):
        raise UsageError(f"${args.token_env} has a space, a line break or a control character "
                         "inside it; set it to the admin token alone")
    try:
        client = AdminClient(args.url, token)
    except ValueError as error:
        raise UsageError(str(error)) from None
    url = redact_url(args.url)
    try:
        yield client
    except AdminError as error:
        hint = ""
        if error.status in (401, 403):
            hint = f"; is ${args.token_env} an admin token this server knows?"
        elif error.status == 404:
            hint = (f"; is --url the Unleash server's address (it was read as "
                    f"{redact_url(client.url)}, with its API at /api)?")
        raise UsageError(client.redact(f"{error}{hint}")) from None
    except requests.exceptions.ConnectionError as error:
        why = next((cause.lower() if cause.startswith("Connection") else cause
                    for cause in _CAUSES if cause in str(error)), "connection failed")
        raise UsageError(f"cannot reach {url}: {why}; is the server running, and --url "
                         "right?") from None
    except requests.exceptions.Timeout:
        raise UsageError(f"{url} did not answer in time; is --url right?") from None
    except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema):
        raise UsageError(f"--url {url!r} is not an http(s) URL such as "
                         "https://unleash.example.com") from None
    except ValueError as error:  # not JSON, or JSON not shaped as the admin API's
        raise UsageError(client.redact(
            f"{url} answered something that is not the Unleash admin API "
            f"({str(error)[:160]}); is --url the Unleash server?")) from None


_CAUSES = ("Connection refused", "Name or service not known", "No route to host",
           "Network is unreachable", "nodename nor servname", "getaddrinfo failed")


def stats_command(args: argparse.Namespace) -> int:
    """Print the instance statistics and whether their checksum holds."""
    form = "json" if args.json else args.format
    with _admin(args) as client:
        statistics = (client.instance_statistics_csv() if form == "csv"
                      else client.instance_statistics())
    if form == "csv":
        print(client.redact(statistics.csv or ""), end="")
    elif form == "json":
        print(client.redact(json.dumps(statistics.data, indent=2, sort_keys=True)))
    else:
        for key in ("instanceId", "versionOSS", "users", "featureToggles", "projects", "roles",
                    "groups", "environments", "segments"):
            print(client.redact(f"{key:<16}{statistics.data.get(key)}"))
    if statistics.verified:
        print(f"checksum        ok ({statistics.checksum})",
              file=sys.stderr if form == "csv" else sys.stdout)
        return 0
    print(f"checksum        MISMATCH: the statistics say {statistics.checksum!r}, their "
          f"content gives {statistics.recomputed!r}", file=sys.stderr)
    return 1


def charts_command(args: argparse.Namespace) -> int:
    """Plan (print) or apply the charts declared on the agent at ``--agent``."""
    declared = load_agent(args.agent, "--agent").chart_configs()
    with _admin(args) as admin:
        changes = plan(admin, declared)
        print(describe(changes))
        if args.action == "apply":
            print(f"applied: {len(apply(admin, changes))} chart(s) saved")
    return 0
