"""``impactagent stats`` and ``impactagent charts plan|apply``: the admin commands.

Both read the admin token from an environment variable (``UNLEASH_ADMIN_TOKEN`` by
default), never from the command line, where it would land in shell history and ``ps``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Any

from .admin import AdminClient, AdminError
from .chart_plan import apply, describe, plan


def _client(args: argparse.Namespace) -> AdminClient:
    if not args.url:
        raise SystemExit("impactagent: give the server with --url or $UNLEASH_URL")
    token = os.environ.get(args.token_env)
    if not token:
        raise SystemExit(f"impactagent: set ${args.token_env} to an admin token")
    return AdminClient(args.url, token)


def stats_command(args: argparse.Namespace) -> int:
    """Print the instance statistics' key figures and whether their checksum holds."""
    try:
        statistics = _client(args).instance_statistics()
    except AdminError as error:
        print(f"impactagent: {error}", file=sys.stderr)
        return 2
    data = statistics.data
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        for key in ("instanceId", "versionOSS", "users", "featureToggles", "projects", "roles",
                    "groups", "environments", "segments"):
            print(f"{key:<16}{data.get(key)}")
    if statistics.verified:
        print(f"checksum        ok ({statistics.checksum})")
        return 0
    print(f"checksum        MISMATCH: the statistics say {statistics.checksum!r}, their "
          f"content gives {statistics.recomputed!r}", file=sys.stderr)
    return 1


def charts_command(args: argparse.Namespace) -> int:
    """Plan (print) or apply the charts declared on the agent at ``--agent``."""
    agent = _load(args.agent)
    declared = agent.chart_configs()
    admin = _client(args)
    try:
        changes = plan(admin, declared)
        print(describe(changes))
        if args.action == "apply":
            saved = apply(admin, changes)
            print(f"applied: {len(saved)} chart(s) saved")
    except AdminError as error:
        print(f"impactagent: {error}", file=sys.stderr)
        return 2
    return 0


def _load(where: str) -> Any:
    module_name, _, attribute = where.partition(":")
    if not attribute:
        raise SystemExit(f"impactagent: --agent takes MODULE:NAME, got {where!r}")
    sys.path.insert(0, os.getcwd())  # the app's modules, as `python -m` would find them
    module = importlib.import_module(module_name)
    agent = getattr(module, attribute, None)
    if agent is None or not hasattr(agent, "chart_configs"):
        raise SystemExit(f"impactagent: {where} is not an impactagent.Agent")
    return agent
