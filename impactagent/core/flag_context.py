"""The flags seen in the current request or task, for metrics that are labelled by them.

An evaluation notes its flag's state in a ``ContextVar``; a metric defined with ``flags=``
reads it when it records. A *scope* (one per request or task) is a mapping shared in place by
its threads and child tasks; outside one, notes are copy-on-write. Open a :func:`flag_scope`
per unit of work where no middleware does, or one unit would see the flags of the one before.

>>> before = flag_states()
>>> with flag_scope():
...     note_flag("new-checkout", flag_state(True, "blue"))
...     flag_states()
{'new-checkout': 'blue'}
>>> flag_states() == before
True
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar, Token
from typing import Iterator

#: The label value of a flag that was not evaluated in the current request or task.
NOT_EVALUATED = "not_evaluated"


class _Scope(dict[str, str]):
    """The mapping of an open scope, noted in place (any other is never changed)."""

    __slots__ = ()


_states: ContextVar[dict[str, str] | None] = ContextVar("impactagent_flag_states",
                                                          default=None)

ScopeToken = Token[dict[str, str] | None]


def flag_state(enabled: bool, variant: str | None = None) -> str:
    """The label value for one evaluation: the variant's real name, else ``"enabled"`` or
    ``"disabled"``."""
    if variant and variant != "disabled" and enabled:
        return variant
    return "enabled" if enabled else "disabled"


def note_flag(name: str, state: str) -> None:
    """Remember ``name``'s state in the current context; the last evaluation wins."""
    states = _states.get()
    if states.__class__ is _Scope:
        states[name] = state
    elif states is None:
        _states.set({name: state})
    elif states.get(name) != state:
        # Copy-on-write: other contexts may hold this mapping.
        states = dict(states)
        states[name] = state
        _states.set(states)


def state_of(name: str) -> str:
    """The state of flag ``name`` in the current context, or :data:`NOT_EVALUATED`."""
    states = _states.get()
    return NOT_EVALUATED if states is None else states.get(name, NOT_EVALUATED)


def flag_states() -> dict[str, str]:
    """Every flag state noted in the current context (a copy)."""
    return dict(_states.get() or {})


@contextlib.contextmanager
def flag_scope() -> Iterator[None]:
    """A block (a request, a task) that starts with no flags seen and forgets them after."""
    token = open_scope()
    try:
        yield
    finally:
        close_scope(token)


def open_scope() -> ScopeToken:
    """Start a scope; pass the result to :func:`close_scope`."""
    return _states.set(_Scope())


def close_scope(token: ScopeToken) -> None:
    _states.reset(token)
