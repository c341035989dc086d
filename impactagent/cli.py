"""The ``impactagent`` command line: ``demo``, ``receive`` and ``check``."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` and run a subcommand; return the process exit code."""
    parser = argparse.ArgumentParser(
        prog="impactagent", description="Report feature-flag usage and impact metrics to "
        "Unleash; try it against a local receiver, and check what would be sent.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run a simulated web shop and check every count")
    demo.add_argument("--requests", type=int, default=10_000, help="simulated requests")
    demo.add_argument("--url", help="report to this Unleash API URL instead of the built-in "
                      "receiver (e.g. http://localhost:4242/api)")
    demo.add_argument("--token", default=os.environ.get("UNLEASH_API_TOKEN"),
                      help="client token for --url (default: $UNLEASH_API_TOKEN)")
    demo.add_argument("--pace", type=float, default=0.2,
                      help="seconds between the ten recording steps (default 0.2)")

    receive = commands.add_parser(
        "receive", help="run a development receiver for POST /api/client/metrics")
    receive.add_argument("--port", type=int, default=4243, help="port (default 4243; 0: any)")
    receive.add_argument("--host", default="127.0.0.1",
                         help="address to bind (default 127.0.0.1: this machine only)")
    receive.add_argument("--token", help="answer 401 on every endpoint, views included, "
                         "without this token (POSTs: in Authorization; views: also "
                         "'Bearer <token>', a browser's password prompt, or ?token=)")
    receive.add_argument("--strict", action="store_true",
                         help="answer 400 to bodies a real server would silently cut")
    receive.add_argument("--max-body", type=int, default=100 * 1024,
                         help="answer 413 over this many bytes (default 102400)")
    receive.add_argument("--duration", type=float,
                         help="stop after this many seconds (default: run until Ctrl-C)")

    check = commands.add_parser("check", help="validate metrics bodies (JSON files, - for "
                                "stdin) and explain each problem")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.add_argument("--max-body", type=int, default=100 * 1024,
                       help="a body over this many bytes gets 413 (default 102400, the "
                       "server's)")

    admin = argparse.ArgumentParser(add_help=False)
    admin.add_argument("--url", default=os.environ.get("UNLEASH_URL"),
                       help="the Unleash server (default: $UNLEASH_URL)")
    admin.add_argument("--token-env", default="UNLEASH_ADMIN_TOKEN", metavar="VARIABLE",
                       help="the environment variable holding an admin token "
                       "(default: UNLEASH_ADMIN_TOKEN; tokens are never taken as arguments)")

    stats = commands.add_parser("stats", parents=[admin],
                                help="fetch instance statistics and verify their checksum")
    stats.add_argument("--json", action="store_true", help="print the statistics as JSON")

    charts = commands.add_parser("charts", parents=[admin],
                                 help="make the server's impact-metric charts match the code")
    charts.add_argument("action", choices=("plan", "apply"))
    charts.add_argument("--agent", required=True, metavar="MODULE:NAME",
                        help="where your agent is, e.g. myapp.metrics:agent")

    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo_main

        return demo_main(args.requests, sys.stdout, url=args.url, token=args.token,
                         pace=args.pace)
    if args.command == "receive":
        return _receive(args)
    if args.command in ("stats", "charts"):
        from .admin_cli import charts_command, stats_command

        return (stats_command if args.command == "stats" else charts_command)(args)
    return _check(args.files, args.max_body)


def _receive(args: argparse.Namespace) -> int:
    import logging

    from .receiver import Receiver

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    receiver = Receiver(port=args.port, host=args.host, token=args.token,
                        max_body=args.max_body, strict=args.strict).start()
    guarded = " with ?token=<the token>, or the token as password" if args.token else ""
    print(f"impactagent receiver on {receiver.url}: point agents at {receiver.api_url}; "
          f"open {receiver.url}/{guarded} to watch (Ctrl-C to stop)", flush=True)
    try:
        threading.Event().wait(args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return 0


#: What a real server does with a body, by the worst of its problems.
VERDICTS = {
    "stored": "a real server stores all of it",
    "ignored": "a real server answers 202 and skips part of it",
    "cut": "a real server answers 202 and stores the impact metrics only up to a problem",
    "discarded": "a real server answers 202 but discards every impact metric in it",
    "rejected": "a real server answers 400 and stores nothing",
    "too large": "a real server answers 413 and stores nothing",
}


def _check(files: List[str], max_body: int) -> int:
    """Hold each body to the rules the receiver answers by (unleash-server 8.2.0's), its size
    included; exit 1 when any body would not be stored whole."""
    from .validation import check_request, notes, outcome_of, parse_body

    worst = 0
    for name in files:
        raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        problems = check_request(raw, max_body)
        outcome = outcome_of(problems)
        print(f"{name}: {VERDICTS[outcome]}")
        for problem in problems:
            print(f"  {problem}")
        document, _ = parse_body(raw)
        if document is not None and outcome != "too large":
            for note in notes(document):
                print(f"  note: {note}")
        worst = max(worst, 0 if outcome == "stored" else 1)
    return worst
