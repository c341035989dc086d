"""``impactagent run``: start a command with the bootstrap on its path, or say what it would
instrument (``--dry-run``)."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import shutil
import sys

from ..delivery.redaction import redact_url
from ..delivery.settings import Settings, SettingsError
from ..devtools.cli_support import UsageError
from . import process

BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap")


def run_command(args: argparse.Namespace) -> int:
    """Check the environment, then print (``--dry-run``) or become the command."""
    argv: list[str] = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise UsageError("give the command to start after --, e.g. "
                         "impactagent run -- gunicorn shop.wsgi")
    env = dict(os.environ)
    env.setdefault("UNLEASH_APP_NAME", os.path.basename(argv[0]) or "app")
    try:
        disabled = process.disabled_names(env)
        settings = process.settings_from_env(env)
    except (ValueError, SettingsError) as error:
        raise UsageError(f"{error}") from None
    _, clashing = process.usable_flags(process.listed_flags(env) or ())
    if clashing:
        raise UsageError(f"IMPACTAGENT_FLAGS: {', '.join(map(repr, clashing))} cannot label "
                         "the metrics: the label is taken (the metrics have "
                         f"{', '.join(process.OWN_LABELS)}, and each flag needs a label of its "
                         "own); leave it out")
    executable = shutil.which(argv[0], path=env.get("PATH"))
    if executable is None:
        if os.sep in argv[0] and os.path.isfile(argv[0]):
            raise UsageError(f"{argv[0]} is not executable; run it with its interpreter "
                             f"(impactagent run -- python {argv[0]}) or chmod +x it")
        raise UsageError(f"{argv[0]}: command not found; give a program on PATH or its path "
                         "(e.g. impactagent run -- python app.py)")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [BOOTSTRAP, env.get("PYTHONPATH")]))
    if args.dry_run:
        print(_dry_run(argv, executable, settings, disabled, env))
        return 0
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(executable, argv, env)  # the command takes this process's place
    except OSError as error:
        raise UsageError(f"{argv[0]}: cannot be started ({error.strerror or error})") from None
    return 127  # not reached


def _dry_run(argv: list[str], executable: str, settings: Settings, disabled: frozenset[str],
             env: dict[str, str]) -> str:
    lines = [f"would run: {' '.join(argv)}  ({executable})",
             f"with PYTHONPATH={env['PYTHONPATH']}", "", "settings in force:"]
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if field.name == "api_key":
            value = "set (not shown)" if value else "not set"
        elif field.name == "url" and value:
            value = redact_url(value)
        elif field.name in ("headers", "proxies") and value:
            value = f"{', '.join(value)} (values not shown)"
        lines.append(f"  {field.name} = {value}")
    lines.append("  mode = " + (f"report to {redact_url(settings.metrics_url)} every "
                                f"{settings.flush_interval:g} s"
                                if settings.url and settings.metrics_url
                                else "record only (no UNLEASH_URL)"))
    flags = process.listed_flags(env)
    lines.append("  flags = " + (", ".join(flags) + " (IMPACTAGENT_FLAGS)" if flags else
                                 "every flag the app's UnleashClient knows at a process's "
                                 "first request or task (IMPACTAGENT_FLAGS not set)"))
    lines += ["", "instrumentations (each when the app imports its library):"]
    for name, what in process.INSTRUMENTATIONS.items():
        state = _state(process.LIBRARIES[name], name in disabled)
        lines.append(f"  {name:<10} {state:<38} {what}")
    return "\n".join(lines)


def _state(library: str, disabled: bool) -> str:
    if disabled:
        return "off (IMPACTAGENT_DISABLED)"
    if importlib.util.find_spec(library) is None:
        return "on (not installed here)"
    from importlib.metadata import PackageNotFoundError, version
    try:
        return f"on ({library} {version(library)})"
    except PackageNotFoundError:
        return f"on ({library} installed)"
