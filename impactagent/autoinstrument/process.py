"""What the instrumentations of one process share: its agent (built from the environment at
first use), the flags that label its metrics (``IMPACTAGENT_FLAGS``, or every flag its
``UnleashClient`` knows at the first request or task), and which instrumentations are on.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Dict, FrozenSet, Optional, Protocol, Set, Tuple

from ..agent import Agent
from .config import INSTRUMENTATIONS, disabled_names, listed_flags, settings_from_env, usable_flags

log = logging.getLogger("impactagent.autoinstrument")


class FlagSource(Protocol):
    """What the process reads of an ``UnleashClient``."""

    @property
    def is_initialized(self) -> bool: ...

    def feature_definitions(self) -> Dict[str, object]: ...


class Process:
    """The agent, the flags and the instrumentations' state, once per process."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._agent: Optional[Agent] = None
        self._flags: Optional[Tuple[str, ...]] = None
        self._failed: Set[str] = set()
        self._disabled: Optional[FrozenSet[str]] = None
        self.clients: weakref.WeakSet[FlagSource] = weakref.WeakSet()
        os.register_at_fork(after_in_child=self._forget_flags)

    def _forget_flags(self) -> None:
        # A forked worker decides from its own clients; a new lock, as another thread may
        # have held the parent's at the fork.
        self._lock = threading.RLock()
        self._flags = None

    def agent(self) -> Agent:
        """The process's agent (built, and started when it has a URL, on first use)."""
        agent = self._agent
        if agent is None:
            with self._lock:
                if self._agent is None:
                    self._agent = Agent(settings=settings_from_env())
                    if self._agent.settings.url is not None:
                        self._agent.start()
                agent = self._agent
        return agent

    def close(self) -> None:
        """Close the agent, if this process built one (its last window is sent)."""
        agent = self._agent
        if agent is not None:
            agent.close()

    def flags(self) -> Tuple[str, ...]:
        """The flags that label request and task metrics (fixed at the first call)."""
        flags = self._flags
        if flags is None:
            with self._lock:
                if self._flags is None:
                    self._flags, clashing = usable_flags(listed_flags() or self._known_flags())
                    if clashing:
                        log.warning("flags %s do not label the metrics: their "
                                    "labels are taken (by the metrics' own, or by another "
                                    "flag's)", ", ".join(clashing))
                    log.debug("metrics labelled by flags %s", self._flags)
                flags = self._flags
        return flags

    def _known_flags(self) -> Tuple[str, ...]:
        names: Set[str] = set()
        for client in list(self.clients):
            if client.is_initialized:
                names.update(client.feature_definitions())
        return tuple(sorted(names))

    def enabled(self, name: str) -> bool:
        """Whether instrumentation ``name`` is on: not disabled, and not failed."""
        disabled = self._disabled
        if disabled is None:
            try:
                disabled = disabled_names()
            except ValueError as error:  # `impactagent run` refuses it; set another way:
                log.warning("%s; nothing is instrumented", error)
                disabled = frozenset(INSTRUMENTATIONS)
            self._disabled = disabled
        return name not in self._failed and name not in disabled

    def failed(self, name: str, error: BaseException) -> None:
        """Turn ``name`` off for the rest of the process, saying so once."""
        with self._lock:
            if name in self._failed:
                return
            self._failed.add(name)
        log.warning("the %s instrumentation failed and is off in this process "
                    "(the app runs on without it): %r", name, error, exc_info=error)


PROCESS = Process()
