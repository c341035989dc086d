"""The ``impactagent`` command: ``demo``, ``receive``, ``check``, ``stats``, ``charts`` and
``run``. Every mistake in calling it is one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .devtools.cli_support import (
    Parser,
    UsageError,
    fail,
    http_url,
    port_number,
    positive_int,
    seconds,
    variable_name,
)

if TYPE_CHECKING:
    from .admin.client import AdminClient

#: The server's JSON body limit (unleash-server's ``express.json`` default), in bytes.
MAX_BODY = 100 * 1024


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand, each argument described with its default."""
    parser = Parser(prog="impactagent", description="Report feature-flag usage and impact metrics "
                    "to Unleash; try it against a local receiver, and check what would be sent.")
    parser.add_argument("--version", action="version", version=f"impactagent {__version__}",
                        help="print the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="run a simulated web shop and check every count",
                               description="Run a simulated web shop that records flags and "
                               "impact metrics, report them, and compare what was recorded with "
                               "what arrived. Exit 0: every count arrived once; 1: counts differ; "
                               "2: the server could not be reached or refused the token.")
    demo.add_argument("--requests", type=positive_int, default=10_000, metavar="N",
                      help="how many simulated requests to record (default 10000)")
    demo.add_argument("--url", type=http_url, help="report to this Unleash server or Edge, "
                      "with or without /api, e.g. http://localhost:4242 (default: a receiver "
                      "started in this process, on a free port)")
    demo.add_argument("--token", default=os.environ.get("UNLEASH_API_TOKEN"),
                      help="client or backend token for --url; better set $UNLEASH_API_TOKEN, "
                      "which stays out of shell history and ps (default: $UNLEASH_API_TOKEN; "
                      "without either, a placeholder a real server refuses)")
    demo.add_argument("--pace", type=seconds, default=0.2, metavar="SECONDS",
                      help="seconds between the ten recording steps (default 0.2)")

    receive = commands.add_parser(
        "receive", help="run a development receiver for POST /api/client/metrics",
        description="Serve POST /api/client/metrics and /api/client/register as unleash-server "
        "8.2.0 answers them, and show what arrived: a page at /, JSON at /api/received, "
        "Prometheus text at /metrics.")
    receive.add_argument("--port", type=port_number, default=4243,
                         help="port to listen on (default 4243; 0: any free port)")
    receive.add_argument("--host", default="127.0.0.1",
                         help="address to bind (default 127.0.0.1: this machine only)")
    receive.add_argument("--token", help="answer 401 on every endpoint, views included, without "
                         "this token (POSTs: in Authorization; views: also 'Bearer <token>', a "
                         "browser's password prompt, or ?token=) (default: no token needed)")
    receive.add_argument("--strict", action="store_true", help="answer 400 to bodies a real "
                         "server would silently cut (default: answer 202 as the server does)")
    receive.add_argument("--max-body", type=positive_int, default=MAX_BODY, metavar="BYTES",
                         help=f"answer 413 over this many bytes (default {MAX_BODY}, the server's)")
    receive.add_argument("--charts", metavar="MODULE:NAME", help="preview the charts declared on "
                         "this agent (chart= on its metrics) as Unleash will draw them, next to "
                         "the impact view; the same reference as 'charts plan --agent' (default: "
                         "none)")
    receive.add_argument("--features", metavar="FILE", help="serve this Unleash features "
                         "document (JSON, as GET /api/client/features answers) to SDKs, so that "
                         "an app's Unleash SDK can run against the receiver alone (default: none)")
    receive.add_argument("--duration", type=seconds, metavar="SECONDS",
                         help="stop after this many seconds (default: run until Ctrl-C)")

    check = commands.add_parser(
        "check", help="validate metrics bodies and explain each problem", description="Hold "
        "request bodies for POST /api/client/metrics to the rules unleash-server 8.2.0 "
        "applies, and say what a real server would do with each. Exit 0: every body is stored "
        "whole; 1: some are not; 2: a file cannot be read.")
    check.add_argument("files", nargs="+", metavar="FILE", help="a JSON metrics body to check, "
                       "as an agent would POST it; - reads one from standard input")
    check.add_argument("--max-body", type=positive_int, default=MAX_BODY, metavar="BYTES",
                       help=f"a body over this many bytes gets 413 (default {MAX_BODY}, the "
                       "server's)")

    admin = Parser(add_help=False)
    admin.add_argument("--url", type=http_url, default=os.environ.get("UNLEASH_URL"),
                       help="the Unleash server, with or without /api (default: $UNLEASH_URL)")
    admin.add_argument("--token-env", type=variable_name, default="UNLEASH_ADMIN_TOKEN",
                       metavar="VARIABLE",
                       help="the environment variable holding an admin token (default: "
                       "UNLEASH_ADMIN_TOKEN; tokens are never taken as arguments)")

    stats = commands.add_parser(
        "stats", parents=[admin], help="fetch instance statistics and verify their checksum",
        description="Fetch the server's instance statistics and check the checksum they carry. "
        "Exit 0: it holds; 1: it does not; 2: the server could not be asked.")
    stats.add_argument("--format", choices=("text", "json", "csv"), default="text",
                       help="text: the key figures; json: every statistic; csv: the server's "
                       "CSV as it sent it, the checksum's verdict on stderr (default: text)")
    stats.add_argument("--json", action="store_true",
                       help="the same as --format json (default: off)")

    charts = commands.add_parser(
        "charts", parents=[admin], help="make the server's impact-metric charts match the code",
        description="Compare the charts declared on your agent's metrics (chart=Chart(...)) "
        "with the server's impact-metric charts, and show or make the changes.")
    charts.add_argument("action", choices=("plan", "apply"),
                        help="plan: show what would change; apply: make the changes")
    charts.add_argument("--agent", required=True, metavar="MODULE:NAME", help="where your agent "
                        "is, e.g. myapp.metrics:agent, imported from the current directory "
                        "(required)")

    from .autoinstrument.cli import INSTRUMENTATIONS
    run = commands.add_parser(
        "run", help="run a command with its web framework, Celery and UnleashClient "
        "instrumented, without changing its code", description="Start COMMAND with impactagent "
        "set up in every Python process it starts (workers included), configured from "
        "UNLEASH_URL, UNLEASH_API_TOKEN, UNLEASH_APP_NAME and IMPACTAGENT_* (without "
        "UNLEASH_URL it only records). IMPACTAGENT_FLAGS names the flags that label the metrics "
        "(default: every flag the app's UnleashClient knows); IMPACTAGENT_DISABLED=name,... "
        f"turns instrumentations off ({', '.join(INSTRUMENTATIONS)}, or all).",
        usage="impactagent run [--dry-run] -- COMMAND [ARGS...]")
    run.add_argument("--dry-run", action="store_true", help="print what would be instrumented "
                     "and the settings in force, and start nothing (default: start the command)")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="COMMAND",
                     help="the command to start, after --")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run a subcommand; return the process exit code. Ctrl-C is an
    answer, not a crash, wherever it comes: building the parser imports modules too."""
    try:
        args = build_parser().parse_args(argv)
        try:
            return _run(args)
        except UsageError as mistake:
            return fail(f"{args.command}: {mistake}")
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .devtools.demo import main as demo_main
        return demo_main(args.requests, sys.stdout, url=args.url, token=args.token, pace=args.pace)
    if args.command == "receive":
        return _receive(args)
    if args.command == "run":
        from .autoinstrument.cli import run_command
        return run_command(args)
    if args.command == "check":
        from .devtools.check import check_files
        return check_files(args.files, args.max_body, sys.stdout, sys.stderr)
    return (_stats if args.command == "stats" else _charts)(args)


def _receive(args: argparse.Namespace) -> int:
    import logging

    from .devtools.agent_reference import load_agent
    from .devtools.receiver import Receiver
    charts = []
    if args.charts is not None:
        charts = load_agent(args.charts, "--charts").chart_configs()
        if not charts:
            raise UsageError(f"--charts {args.charts}: the agent declares no chart; declare "
                             "one with chart=Chart(...) on agent.counter, gauge or histogram")
    features = None if args.features is None else _features(args.features)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    receiver = Receiver(port=args.port, host=args.host, token=args.token, max_body=args.max_body,
                        strict=args.strict, charts=charts, features=features)
    try:
        receiver.start()
    except OSError as error:
        raise UsageError(bind_problem(error, args.host, args.port)) from None
    guarded = " with ?token=<the token>, or the token as password" if args.token else ""
    print(f"impactagent receiver on {receiver.url}: point agents at {receiver.api_url}; "
          f"open {receiver.url}/{guarded} to watch (Ctrl-C to stop)", flush=True)
    if charts:
        print(f"previewing {len(charts)} declared chart(s) from {args.charts}", flush=True)
    try:
        threading.Event().wait(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return 0


def _features(path: str) -> dict[str, Any]:
    try:
        document = json.loads(Path(path).read_bytes())
    except OSError as error:
        raise UsageError(f"--features {path}: cannot be read "
                         f"({error.strerror or error}); give an Unleash features file") from None
    except ValueError as error:
        raise UsageError(f"--features {path}: not JSON ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("features"), list):
        raise UsageError(f"--features {path}: give an Unleash features document, "
                         '{"version": 1, "features": [...]}')
    return document


def bind_problem(error: OSError, host: str, port: int) -> str:
    """Why the receiver could not listen on ``host:port``, and what to do instead."""
    if isinstance(error, socket.gaierror):
        why = (f"{host!r} is not an address or a name this machine can resolve "
               f"({error.strerror}); give --host an address such as 127.0.0.1")
    else:
        why = {errno.EADDRINUSE: "the port is in use; stop what holds it, or choose another "
                                 "--port (0 picks a free one)",
               errno.EACCES: "permission denied (ports below 1024 need privileges); choose "
                             "--port 1024 or above",
               errno.EADDRNOTAVAIL: f"{host} is not an address of this machine; give --host "
                                    "one of its addresses (127.0.0.1, or 0.0.0.0 for all)",
               }.get(error.errno or 0, f"{error.strerror or error}")
    return f"cannot listen on {host}:{port}: {why}"


@contextmanager
def _admin(args: argparse.Namespace) -> Iterator[AdminClient]:
    """The admin client ``args`` ask for (the token from an environment variable, never the
    command line, where ``ps`` would show it); what a wrong ``--url`` or token makes its
    calls raise, as one line without secrets."""
    import requests

    from .admin.client import AdminClient, AdminError
    from .delivery.redaction import redact_url
    from .delivery.settings import token_problem

    if not args.url:
        raise UsageError("give the server with --url or $UNLEASH_URL")
    token = (os.environ.get(args.token_env) or "").strip()  # a copy may bring a line break
    if not token:
        raise UsageError(f"set ${args.token_env} to an admin token")
    problem = token_problem(token)
    if problem:
        raise UsageError(f"${args.token_env} {problem}; set it to the admin token alone")
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


def _stats(args: argparse.Namespace) -> int:
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


def _charts(args: argparse.Namespace) -> int:
    from .admin.client import apply, describe, plan
    from .devtools.agent_reference import load_agent
    declared = load_agent(args.agent, "--agent").chart_configs()
    with _admin(args) as admin:
        changes = plan(admin, declared)
        print(describe(changes))
        if args.action == "apply":
            print(f"applied: {len(apply(admin, changes))} chart(s) saved")
    return 0
