"""``impactagent check``: each metrics body held to unleash-server 8.2.0's rules, a verdict
per file. Exit 0: every body is stored whole; 1: some are not; 2: a file cannot be read.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

from ..server_rules.validation import check_request, notes, outcome_of, parse_body
from .cli_support import USAGE, UsageError

#: What a real server does with a body, by the worst of its problems.
VERDICTS = {
    "stored": "a real server stores all of it",
    "ignored": "a real server answers 202 and skips part of it",
    "cut": "a real server answers 202 and stores the impact metrics only up to a problem",
    "discarded": "a real server answers 202 but discards every impact metric in it",
    "rejected": "a real server answers 400 and stores nothing",
    "too large": "a real server answers 413 and stores nothing",
    "poisoned": "a real server answers 202, then loses other apps' data too",
}


def check_files(files: list[str], max_body: int, out: TextIO, err: TextIO) -> int:
    """Print a verdict per file (``-``: stdin) on ``out``, a line on ``err`` per unreadable one."""
    if files.count("-") > 1:
        raise UsageError("'-' is given more than once; standard input holds one body")
    bodies = [(name, _read(name)) for name in files]
    status = 0
    for _name, raw in bodies:  # mistakes first: they are not lost above a page of verdicts
        if isinstance(raw, UsageError):
            print(f"impactagent check: {' '.join(str(raw).split())}", file=err, flush=True)
            status = USAGE
    for name, raw in bodies:
        if not isinstance(raw, UsageError):
            stored = _verdict(name, raw, max_body, out)
            status = max(status, 0 if stored else 1)
    return status


def _verdict(name: str, raw: bytes, max_body: int, out: TextIO) -> bool:
    """Print the verdict on one body; True when a real server stores all of it."""
    try:
        problems = check_request(raw, max_body)
        outcome = outcome_of(problems)
        lines = [f"{name}: {VERDICTS[outcome]}", *(f"  {problem}" for problem in problems)]
        document, _ = parse_body(raw)
        if document is not None and outcome != "too large":
            lines += [f"  note: {note}" for note in notes(document)]
    except Exception as error:  # a verdict for this file, and the others go on
        print(f"{name}: impactagent check cannot decide on this body ({type(error).__name__}: "
              f"{str(error)[:200]}); please report it with the file", file=out, flush=True)
        return False
    print("\n".join(lines), file=out, flush=True)
    return outcome == "stored"


def _read(name: str) -> bytes | UsageError:
    if name == "-":
        if sys.stdin is None:
            return UsageError("'-' reads standard input, and there is none; give a file "
                              "name, or pipe a body in")
        if sys.stdin.isatty():  # it would wait for typing with no prompt
            return UsageError("'-' reads a body from standard input, which is a terminal; "
                              "pipe one in (... | impactagent check -) or give a file")
        return sys.stdin.buffer.read()
    try:
        return Path(name).read_bytes()
    except FileNotFoundError:
        return UsageError(f"{name}: no such file; give the path of a JSON metrics body")
    except IsADirectoryError:
        return UsageError(f"{name} is a directory; give the JSON files in it "
                          f"(e.g. {os.path.join(name, '*.json')})")
    except PermissionError:
        return UsageError(f"{name}: permission denied; give a file you can read")
    except OSError as error:
        return UsageError(f"{name}: cannot be read ({error.strerror or error})")


__all__: tuple[str, ...] = ("VERDICTS", "check_files")
