"""What every ``impactagent`` subcommand shares: a user's mistake is not a bug, so it gets one
line (:class:`UsageError`) and exit status 2, as ``argparse`` does, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

USAGE = 2
EXAMPLE_URL = "https://unleash.example.com"


class UsageError(Exception):
    """A mistake in how a command was called; the message says what to do, in one line."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line: the problem and where help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: {message} (see '{self.prog} --help')\n")

    # typeshed overloads the signature on the namespace's type; this one keeps argparse's.
    def parse_known_args(self, args: Any = None, namespace: Any = None  # type: ignore[override]
                         ) -> tuple[argparse.Namespace, list[str]]:
        """An argument nobody knows is this parser's error, so a subcommand's mistyped option
        points at that subcommand's ``--help``."""
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def positive_int(text: str) -> int:
    value = _int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value


def port_number(text: str) -> int:
    value = _int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535; 0: any free "
                                         "port)")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def http_url(text: str) -> str:
    """What ``--url`` takes: an http(s) URL with a host, told apart from one that is not
    before anything is sent, and quoted without its secrets."""
    from urllib.parse import urlsplit

    from ..delivery.redaction import redact_url
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (a port that is not a number raises here, not later)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{redact_url(text)!r} is malformed ({error}); give "
                                         f"an http(s) URL such as {EXAMPLE_URL}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{redact_url(text)!r} is not an http(s) URL; give "
                                         f"one such as {EXAMPLE_URL}")
    return text


def variable_name(text: str) -> str:
    """What ``--token-env`` takes: the name of an environment variable."""
    if not (text.isidentifier() and text.isascii()):
        raise argparse.ArgumentTypeError(f"{text!r} is not the name of an environment "
                                         "variable; give one such as UNLEASH_ADMIN_TOKEN")
    return text


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def fail(message: str) -> int:
    """Print ``impactagent <message>`` on stderr in one line; return the usage exit status."""
    print(f"impactagent {' '.join(message.split())}", file=sys.stderr, flush=True)
    return USAGE
