"""Checks of metric names, label names, help texts and label values: what the server
refuses or silently repairs fails loudly in the app."""

from __future__ import annotations

import re
from typing import Any, Iterable

#: The server sanitises names to this alphabet; we refuse what it would have to change.
NAME_PATTERN = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

#: Labels the agent adds to every sample, or the server adds when it re-exposes a series.
RESERVED_LABELS = frozenset({"appName", "environment", "origin", "metric_type"})


def check_metric_name(name: Any) -> str:
    """``name`` if it is a valid metric name, else raise with the rule it broke."""
    if not isinstance(name, str):
        raise TypeError(f"metric name must be a str, got {type(name).__name__}")
    if not NAME_PATTERN.match(name):
        raise ValueError(f"invalid metric name {name!r}: expected [a-zA-Z_][a-zA-Z0-9_]* "
                         "(a letter or '_' first, then letters, digits or '_')")
    return name


def check_help(metric: str, help_text: Any) -> str:
    if not isinstance(help_text, str):
        raise TypeError(f"help text of {metric!r} must be a str, got {type(help_text).__name__}")
    if not help_text.strip():
        raise ValueError(f"help text of {metric!r} is empty: say what the metric measures")
    return help_text


def check_label_names(metric: str, names: Iterable[Any], *, extra_reserved: Iterable[str] = ()
                      ) -> tuple[str, ...]:
    """The label names as a tuple, refusing invalid, reserved and repeated names."""
    if isinstance(names, str):
        raise TypeError(f"labels of {metric!r} must be a sequence of names, not the string "
                        f"{names!r}; write labels=({names!r},)")
    reserved = RESERVED_LABELS.union(extra_reserved)
    result = tuple(names)
    for label in result:
        if not isinstance(label, str):
            raise TypeError(f"label name of {metric!r} must be a str, got {type(label).__name__}")
        if not NAME_PATTERN.match(label) or label.startswith("__"):
            raise ValueError(f"invalid label name {label!r} for {metric!r}: expected "
                             "[a-zA-Z_][a-zA-Z0-9_]* not starting with '__'")
        if label in reserved:
            raise ValueError(f"label name {label!r} of {metric!r} is reserved: the agent or the "
                             f"server sets it ({', '.join(sorted(reserved))})")
    if len(set(result)) != len(result):
        raise ValueError(f"label names of {metric!r} repeat a name: {result}")
    return result


def label_value(metric: str, label: str, value: Any) -> str:
    """One label value as the string the server stores; ``None`` and ``""`` refused."""
    if isinstance(value, str):
        text = str.__str__(value)  # a str Enum's plain text, not "Color.RED"
    elif value is None or isinstance(value, (tuple, list, dict, set)):
        raise TypeError(f"label {label!r} of {metric!r} needs a string value (or a number), "
                        f"got {type(value).__name__}")
    else:
        text = str(value)
    if not text:
        raise ValueError(f"label {label!r} of {metric!r} needs a non-empty value: Unleash "
                         "discards every impact metric of a body that has an empty one; use a "
                         "value that says it, such as 'none' or 'unknown'")
    return text


def flag_label_name(metric: str, flag: Any) -> str:
    """The label name that carries ``flag``'s state (``new-checkout`` -> ``new_checkout``)."""
    if not isinstance(flag, str) or not flag:
        raise TypeError(f"flags of {metric!r} must be non-empty flag names, got {flag!r}")
    label = re.sub(r"[^a-zA-Z0-9_]", "_", flag)
    return label if not label[0].isdigit() else "_" + label
