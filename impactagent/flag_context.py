"""The flags seen in the current request or task, for metrics that are labelled by them.

When a flag is evaluated (through ``@agent.flag``, ``agent.record_flag`` or an adapter), its
state is noted in a :class:`contextvars.ContextVar`: the variant's name, or ``"enabled"`` /
``"disabled"``. A metric defined with ``flags=("new-checkout",)`` reads that state when it
records, so a checkout counted after the flag was decided is labelled with the flag's state,
without evaluating the flag again and without counting the evaluation twice.

Context variables follow threads and ``asyncio`` tasks: each task sees what was noted in
it (and what its parent had noted when it was created), never what a sibling noted. A
worker thread serves request after request, so each request must start with a clean slate:
the web middlewares open a :func:`flag_scope` per request; elsewhere (a Celery task, a
script), open one yourself.

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
from contextvars import ContextVar
from typing import Dict, Iterator, Mapping, Optional

#: The label value of a flag that was not evaluated in the current request or task.
NOT_EVALUATED = "not_evaluated"

_EMPTY: Mapping[str, str] = {}
_states: ContextVar[Mapping[str, str]] = ContextVar("impactagent_flag_states", default=_EMPTY)


def flag_state(enabled: bool, variant: Optional[str] = None) -> str:
    """The label value for one evaluation: the variant's name if it has a real one, else
    ``"enabled"`` or ``"disabled"`` (Unleash calls a flag without variants ``"disabled"``)."""
    if variant and variant != "disabled" and enabled:
        return variant
    return "enabled" if enabled else "disabled"


def note_flag(name: str, state: str) -> None:
    """Remember ``name``'s state in the current context; the last evaluation wins."""
    states = _states.get()
    if states.get(name) != state:
        # A new mapping each time: a task created earlier holds the old one, unchanged.
        _states.set({**states, name: state})


def state_of(name: str) -> str:
    """The state of flag ``name`` in the current context, or :data:`NOT_EVALUATED`."""
    return _states.get().get(name, NOT_EVALUATED)


def flag_states() -> Dict[str, str]:
    """Every flag state noted in the current context (a copy)."""
    return dict(_states.get())


@contextlib.contextmanager
def flag_scope() -> Iterator[None]:
    """A block (a request, a task) that starts with no flags seen and forgets them after."""
    token = _states.set(_EMPTY)
    try:
        yield
    finally:
        _states.reset(token)
