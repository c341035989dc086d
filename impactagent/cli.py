"""The ``impactagent`` command line."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` and run a subcommand; return the process exit code."""
    parser = argparse.ArgumentParser(prog="impactagent", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a simulated workload and show what is sent")
    demo.add_argument("--requests", type=int, default=10_000, help="simulated requests")
    demo.add_argument("--show-body", action="store_true", help="print the first request body")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import main as demo_main

        return demo_main(args.requests, sys.stdout, args.show_body)
    parser.error(f"unknown command {args.command!r}")
    return 2
