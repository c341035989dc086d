"""The ``UnleashClient``, wired by itself: each answer is noted in the flag scope, and the
clients are known, so their flags can label the metrics. The SDK counts its own evaluations,
so the agent counts them only for a client made with ``disable_metrics=True``."""

from __future__ import annotations

import functools
from typing import Any, Optional

from ..core.flag_context import flag_state, note_flag
from ..core.flag_decorator import evaluation
from .process import PROCESS

NAME = "unleash"


def wire(client_class: Any) -> None:
    """Wrap ``client_class``'s ``__init__``, ``is_enabled`` and ``get_variant``."""
    init, is_enabled, get_variant = (client_class.__init__, client_class.is_enabled,
                                     client_class.get_variant)

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        try:
            PROCESS.clients.add(self)  # its flags may label the metrics
        except Exception as error:
            PROCESS.failed(NAME, error)

    @functools.wraps(is_enabled)
    def is_enabled_noted(self: Any, feature_name: str, *args: Any, **kwargs: Any) -> Any:
        enabled = is_enabled(self, feature_name, *args, **kwargs)
        _note(self, feature_name, bool(enabled), None)
        return enabled

    @functools.wraps(get_variant)
    def get_variant_noted(self: Any, feature_name: str, *args: Any, **kwargs: Any) -> Any:
        variant = get_variant(self, feature_name, *args, **kwargs)
        _note(self, feature_name, *evaluation(variant))
        return variant

    client_class.__init__ = __init__
    client_class.is_enabled = is_enabled_noted
    client_class.get_variant = get_variant_noted


def _note(client: Any, name: str, enabled: bool, variant: Optional[str]) -> None:
    """Note (or, for a client that sends no metrics, count) one answer."""
    if not PROCESS.enabled(NAME):
        return
    try:
        if client.unleash_disable_metrics:
            PROCESS.agent().count_evaluation(name, enabled, variant)
        else:
            note_flag(name, flag_state(enabled, variant))
    except Exception as error:
        PROCESS.failed(NAME, error)
