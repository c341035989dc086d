"""What the instrumentations of one process share: its agent (built from the environment at
first use), the flags that label its metrics (``IMPACTAGENT_FLAGS``, or every flag its
``UnleashClient`` knows at the first request or task), and which instrumentations are on.
``impactagent run`` checks the same settings without building the agent (a quick start).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from ..core._naming import flag_label_name
from ..delivery.settings import Settings, SettingsError

if TYPE_CHECKING:
    from ..agent import Agent

log = logging.getLogger("impactagent.autoinstrument")
T = TypeVar("T")

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
        raise ValueError(f"IMPACTAGENT_DISABLED: unknown instrumentation "
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


class Process:
    """The agent, the flags and the instrumentations' state, once per process."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._agent: Agent | None = None
        self._flags: tuple[str, ...] | None = None
        try:
            self._off = set(disabled_names())  # and those that failed since
        except ValueError as error:  # `impactagent run` refuses it; set another way:
            log.warning("%s; nothing is instrumented", error)
            self._off = set(INSTRUMENTATIONS)
        #: The ``UnleashClient`` instances made, whose flags may label the metrics.
        self.clients: weakref.WeakSet[Any] = weakref.WeakSet()
        os.register_at_fork(after_in_child=self._forget_flags)

    def _forget_flags(self) -> None:
        # A forked worker decides from its own clients; a new lock, as another thread may
        # have held the parent's at the fork.
        self._lock = threading.RLock()
        self._flags = None

    def agent(self) -> Agent:
        """The process's agent (built, and started when it has a URL, on first use)."""
        if self._agent is None:
            with self._lock:
                if self._agent is None:
                    from ..agent import Agent
                    self._agent = Agent(settings=settings_from_env())
                    if self._agent.settings.url is not None:
                        self._agent.start()
        return self._agent

    def close(self) -> None:
        """Close the agent, if this process built one (its last window is sent)."""
        if self._agent is not None:
            self._agent.close()

    def flags(self) -> tuple[str, ...]:
        """The flags that label request and task metrics (fixed at the first call)."""
        with self._lock:
            if self._flags is None:
                known = {name for client in list(self.clients) if client.is_initialized
                         for name in client.feature_definitions()}
                self._flags, clashing = usable_flags(listed_flags() or sorted(known))
                if clashing:
                    log.warning("flags %s do not label the metrics: their labels are taken (by "
                                "the metrics' own, or by another flag's)", ", ".join(clashing))
                log.debug("metrics labelled by flags %s", self._flags)
            return self._flags

    def enabled(self, name: str) -> bool:
        """Whether instrumentation ``name`` is on: not disabled, and not failed."""
        return name not in self._off

    def attempt(self, name: str, make: Callable[[], T], otherwise: T) -> T:
        """``make()`` while instrumentation ``name`` is on, else ``otherwise``; ``make``
        raising turns ``name`` off for the rest of the process, said once."""
        if name in self._off:
            return otherwise
        try:
            return make()
        except Exception as error:
            with self._lock:
                first = name not in self._off
                self._off.add(name)
            if first:
                log.warning("the %s instrumentation failed and is off in this process "
                            "(the app runs on without it): %r", name, error, exc_info=error)
            return otherwise
