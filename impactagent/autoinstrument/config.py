"""What ``impactagent run`` is configured by, without importing the agent (a quick start)."""

from __future__ import annotations

import os
from typing import Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple

from ..core._naming import flag_label_name
from ..delivery.settings import Settings, SettingsError

INSTRUMENTATIONS: Dict[str, str] = {
    "flask": "Flask apps: requests by URL rule",
    "django": "Django: requests by URL pattern (gunicorn, runserver, any WSGI server)",
    "fastapi": "FastAPI apps: requests by route (uvicorn, any ASGI server)",
    "starlette": "Starlette apps: requests by route",
    "celery": "Celery workers: tasks by name and state",
    "gunicorn": "any other WSGI app gunicorn serves: requests, route 'unmatched'",
    "unleash": "UnleashClient: is_enabled and get_variant answers label the metrics",
}
LIBRARIES = {"flask": "flask", "django": "django", "fastapi": "fastapi",
             "starlette": "starlette", "celery": "celery", "gunicorn": "gunicorn",
             "unleash": "UnleashClient"}


def disabled_names(environ: Optional[Mapping[str, str]] = None) -> FrozenSet[str]:
    """The instrumentations ``IMPACTAGENT_DISABLED`` turns off; ValueError for an unknown one."""
    raw = (os.environ if environ is None else environ).get("IMPACTAGENT_DISABLED", "")
    names = {name.strip().lower() for name in raw.split(",") if name.strip()}
    if "all" in names:
        return frozenset(INSTRUMENTATIONS)
    unknown = sorted(names - set(INSTRUMENTATIONS))
    if unknown:
        raise ValueError(f"IMPACTAGENT_DISABLED: unknown instrumentation "
                         f"{', '.join(map(repr, unknown))}; use names from: "
                         f"{', '.join(INSTRUMENTATIONS)}, or all")
    return frozenset(names)


def listed_flags(environ: Optional[Mapping[str, str]] = None) -> Optional[Tuple[str, ...]]:
    """The flags ``IMPACTAGENT_FLAGS`` names, or None when it is not set."""
    raw = (os.environ if environ is None else environ).get("IMPACTAGENT_FLAGS", "")
    names = tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    return names or None


def settings_from_env(environ: Optional[Mapping[str, str]] = None) -> Settings:
    """The agent's settings, as ``Agent.from_env`` reads them."""
    env = os.environ if environ is None else environ
    try:
        return Settings.from_env(env)
    except SettingsError:
        if env.get("UNLEASH_URL"):
            raise
        # No URL: nothing will be sent, so no token is needed either.
        return Settings.from_env(env, own_transport=True)


OWN_LABELS = ("method", "route", "status_class", "task", "state")


def usable_flags(flags: Iterable[str]) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """``flags`` split into those that can label the metrics and those whose label is taken
    (``route``, or ``new_checkout`` after ``new-checkout``)."""
    taken = set(OWN_LABELS)
    usable: List[str] = []
    clashing: List[str] = []
    for flag in flags:
        label = flag_label_name("the request metrics", flag)
        (clashing if label in taken else usable).append(flag)
        taken.add(label)
    return tuple(usable), tuple(clashing)
