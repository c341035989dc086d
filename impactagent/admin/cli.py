"""``impactagent stats`` and ``impactagent charts plan|apply``: the admin commands.

Both read the admin token from an environment variable (``UNLEASH_ADMIN_TOKEN`` by
default), never from the command line, where it would land in shell history and ``ps``.
A server that cannot be reached, answers an error or answers something that is not the
admin API is the user's to fix (a wrong ``--url`` or token): one line, exit 2
(:class:`~impactagent.devtools.cli_support.UsageError`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback
from contextlib import contextmanager
from typing import Iterator

import requests

from ..agent import Agent
from ..delivery.redaction import redact_url
from ..devtools.cli_support import UsageError
from .client import AdminClient, AdminError
from .plan import apply, describe, plan


def _client(args: argparse.Namespace) -> AdminClient:
    if not args.url:
        raise UsageError("give the server with --url or $UNLEASH_URL")
    token = os.environ.get(args.token_env)
    if not token:
        raise UsageError(f"set ${args.token_env} to an admin token")
    return AdminClient(args.url, token)


@contextmanager
def _asking(args: argparse.Namespace) -> Iterator[None]:
    """Turn what a wrong ``--url`` or token makes the admin API calls raise into one line."""
    url = redact_url(args.url or "")
    try:
        yield
    except AdminError as error:
        hint = ""
        if error.status in (401, 403):
            hint = f"; is ${args.token_env} an admin token this server knows?"
        elif error.status == 404:
            hint = "; is --url the Unleash server (with or without /api)?"
        raise UsageError(f"{error}{hint}") from None
    except requests.exceptions.ConnectionError as error:
        raise UsageError(f"cannot reach {url}: {_why(error)}; is the server "
                         "running, and --url right?") from None
    except requests.exceptions.Timeout:
        raise UsageError(f"{url} did not answer in time; is --url right?"
                         ) from None
    except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema):
        raise UsageError(f"--url {url!r} is not an http(s) URL such as "
                         "https://unleash.example.com") from None
    except ValueError as error:  # not JSON, or JSON not shaped as the admin API's
        raise UsageError(f"{url} answered something that is not the Unleash "
                         f"admin API ({str(error)[:120]}); is --url the Unleash server?"
                         ) from None


def _why(error: requests.exceptions.ConnectionError) -> str:
    """The cause a person can act on, out of requests' nested connection errors."""
    text = str(error)
    for cause in ("Connection refused", "Name or service not known", "No route to host",
                  "Network is unreachable", "nodename nor servname", "getaddrinfo failed"):
        if cause in text:
            return cause.lower() if cause.startswith("Connection") else cause
    return "connection failed"


def stats_command(args: argparse.Namespace) -> int:
    """Print the instance statistics' key figures and whether their checksum holds."""
    client = _client(args)
    with _asking(args):
        statistics = client.instance_statistics()
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
    with _asking(args):
        changes = plan(admin, declared)
        print(describe(changes))
        if args.action == "apply":
            saved = apply(admin, changes)
            print(f"applied: {len(saved)} chart(s) saved")
    return 0


def _load(where: str) -> Agent:
    """The agent at ``MODULE:NAME``, imported as ``python -m`` would, from the current
    directory; every way the import can miss is the user's to fix."""
    module_name, colon, attribute = where.partition(":")
    if not colon or not module_name or not attribute:
        raise UsageError(f"--agent takes MODULE:NAME, such as myapp.metrics:agent; "
                         f"got {where!r}")
    if module_name.startswith(".") or ".." in module_name or module_name.endswith("."):
        raise UsageError(f"--agent needs an absolute module name such as "
                         f"myapp.metrics; got {module_name!r}")
    sys.path.insert(0, os.getcwd())  # the app's modules, as `python -m` would find them
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and (module_name == error.name
                                       or module_name.startswith(error.name + ".")):
            raise UsageError(f"--agent {where}: no module named {error.name!r} here; "
                             "run from your app's directory, or add it to PYTHONPATH"
                             ) from None
        raise UsageError(f"--agent {where}: importing {module_name} failed: "
                         f"{_raised(error)}") from None
    except Exception as error:  # the app's own code failed: say where, in one line
        raise UsageError(f"--agent {where}: importing {module_name} failed: "
                         f"{_raised(error)}") from None
    if not hasattr(module, attribute):
        raise UsageError(f"--agent {where}: module {module_name} has no {attribute!r}"
                         )
    agent = getattr(module, attribute)
    if not isinstance(agent, Agent):
        raise UsageError(f"--agent {where} is a {type(agent).__name__}, not an "
                         "impactagent.Agent")
    return agent


def _raised(error: BaseException) -> str:
    """``Type: message (file, line n)``: an exception in one line, where it was raised."""
    frames = traceback.extract_tb(error.__traceback__)
    # The app's own frame, when there is one: the line to look at is there, not in a library.
    here = os.getcwd() + os.sep
    ours = [frame for frame in frames if frame.filename.startswith(here)] or frames[-1:]
    where = f" ({ours[-1].filename}, line {ours[-1].lineno})" if ours else ""
    return f"{type(error).__name__}: {error}{where}"
