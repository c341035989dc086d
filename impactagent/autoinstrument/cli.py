"""``impactagent run``: what it is configured by, and the launcher, which starts a command
with the bootstrap on its path or says what it would instrument (``--dry-run``). It imports
no agent: a quick start."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ..core._naming import flag_label_name
from ..delivery.redaction import redact_url
from ..delivery.settings import Settings, SettingsError

if TYPE_CHECKING:
    import argparse

BOOTSTRAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap")
INSTRUMENTATIONS: dict[str, str] = {
    "flask": "Flask apps: requests by URL rule",
    "django": "Django: requests by URL pattern (gunicorn, runserver, any WSGI server)",
    "fastapi": "FastAPI apps: requests by route (uvicorn, any ASGI server)",
    "starlette": "Starlette apps: requests by route",
    "celery": "Celery workers: tasks by name and state",
    "gunicorn": "any other WSGI app gunicorn serves: requests, route 'unmatched'",
    "unleash": "UnleashClient: is_enabled and get_variant answers label the metrics",
}
#: The library each instrumentation is for, as imported.
LIBRARIES = {**{name: name for name in INSTRUMENTATIONS}, "unleash": "UnleashClient"}
OWN_LABELS = ("method", "route", "status_class", "task", "state")


def disabled_names(environ: Mapping[str, str] = os.environ) -> frozenset[str]:
    """The instrumentations ``IMPACTAGENT_DISABLED`` turns off; ValueError for an unknown one."""
    raw = environ.get("IMPACTAGENT_DISABLED", "")
    names = {name.strip().lower() for name in raw.split(",") if name.strip()}
    if "all" in names:
        return frozenset(INSTRUMENTATIONS)
    unknown = sorted(names - set(INSTRUMENTATIONS))
    if unknown:
        raise ValueError("IMPACTAGENT_DISABLED: unknown instrumentation "
                         f"{', '.join(map(repr, unknown))}; use names from: "
                         f"{', '.join(INSTRUMENTATIONS)}, or all")
    return frozenset(names)


def listed_flags(environ: Mapping[str, str] = os.environ) -> tuple[str, ...] | None:
    """The flags ``IMPACTAGENT_FLAGS`` names, or None when it is not set."""
    raw = environ.get("IMPACTAGENT_FLAGS", "")
    return tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip())) or None


def settings_from_env(environ: Mapping[str, str] = os.environ) -> Settings:
    """The agent's settings, as ``Agent.from_env`` reads them; without a URL nothing will be
    sent, so no token is needed either."""
    try:
        return Settings.from_env(environ)
    except SettingsError:
        if environ.get("UNLEASH_URL"):
            raise
        return Settings.from_env(environ, own_transport=True)


def usable_flags(flags: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``flags`` split into those that can label the metrics and those whose label is taken
    (``route``, or ``new_checkout`` after ``new-checkout``)."""
    taken = set(OWN_LABELS)
    usable: list[str] = []
    clashing: list[str] = []
    for flag in flags:
        label = flag_label_name("the request metrics", flag)
        (clashing if label in taken else usable).append(flag)
        taken.add(label)
    return tuple(usable), tuple(clashing)


def run_command(args: argparse.Namespace) -> int:
    """Check the environment, then print (``--dry-run``) or become the command."""
    from ..devtools.cli_support import UsageError  # the launcher's only: an app never loads it

    argv: list[str] = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        raise UsageError("give the command to start after --, e.g. "
                         "impactagent run -- gunicorn shop.wsgi")
    env = dict(os.environ)
    env.setdefault("UNLEASH_APP_NAME", os.path.basename(argv[0]) or "app")
    try:
        disabled = disabled_names(env)
        settings = settings_from_env(env)
    except (ValueError, SettingsError) as error:
        raise UsageError(f"{error}") from None
    _, clashing = usable_flags(listed_flags(env) or ())
    if clashing:
        labels = ", ".join(OWN_LABELS)
        raise UsageError(f"IMPACTAGENT_FLAGS: {', '.join(map(repr, clashing))} cannot label "
                         f"the metrics: the label is taken (the metrics have {labels}, and each "
                         "flag needs a label of its own); leave it out")
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
                                if settings.metrics_url
                                else "record only (no UNLEASH_URL)"))
    flags = listed_flags(env)
    lines.append("  flags = " + (", ".join(flags) + " (IMPACTAGENT_FLAGS)" if flags else
                                 "every flag the app's UnleashClient knows at a process's "
                                 "first request or task (IMPACTAGENT_FLAGS not set)"))
    lines += ["", "instrumentations (each when the app imports its library):"]
    for name, what in INSTRUMENTATIONS.items():
        state = _state(LIBRARIES[name], name in disabled)
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
