"""A request body's text read as the server's ``JSON.parse`` reads it."""

from __future__ import annotations

import json
import re
from typing import Any

_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")
_SPACE = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_LITERALS = {"true": True, "false": False, "null": None}
_scanstring: Any = getattr(json.decoder, "scanstring")  # noqa: B009 (not in the stubs)


def json_document(text: str) -> Any:
    """``JSON.parse(text)``: no depth limit, integers of any length (JavaScript reads every
    number as a double; Python's ``int()`` refuses past 4,300 digits), lone surrogates as
    U+FFFD (what the server writes for them). Raises ValueError."""
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON value")

    try:
        document = json.loads(text, parse_constant=refuse, parse_int=_json_int)
    except RecursionError:
        document = _deep_document(text)
    return _without_surrogates(document) if _SURROGATE.search(text) else document


def _json_int(digits: str) -> int | float:
    return int(digits) if len(digits) < 4000 else float(digits)


def _without_surrogates(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings (keys too) as U+FFFD, iteratively."""
    def clean(text: str) -> str:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")

    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        item = container[key]
        if isinstance(item, str):
            container[key] = clean(item)
        elif isinstance(item, list):
            stack += [(item, i) for i in range(len(item))]
        elif isinstance(item, dict):
            cleaned = {clean(k): v for k, v in item.items()}
            if cleaned.keys() != item.keys():
                item.clear()
                item.update(cleaned)
            stack += [(item, k) for k in item]
    return root[0]


def _deep_document(text: str) -> Any:
    """JSON past the recursion limit: the open containers are a list, not the call stack."""
    containers: list[Any] = []  # innermost last
    keys: list[str | None] = []  # beside each, an object's pending key
    at = _skip(text, 0)
    while True:
        value: Any
        if text.startswith(("[", "{"), at):
            char = text[at]
            at = _skip(text, at + 1)
            if not text.startswith("]" if char == "[" else "}", at):
                containers.append([] if char == "[" else {})
                keys.append(None)
                if char == "{":
                    keys[-1], at = _key(text, at)
                continue
            value, at = ([] if char == "[" else {}), at + 1
        else:
            value, at = _scalar(text, at)
        # Place the value, then close every container that ends here.
        while True:
            at = _skip(text, at)
            if not containers:
                if at != len(text):
                    raise ValueError(f"extra data at {at}")
                return value
            container = containers[-1]
            closer = "}" if isinstance(container, dict) else "]"
            if closer == "}":
                container[keys[-1]] = value
            else:
                container.append(value)
            if text.startswith(",", at):
                at = _skip(text, at + 1)
                if closer == "}":
                    keys[-1], at = _key(text, at)
                break
            if not text.startswith(closer, at):
                raise ValueError(f"',' or {closer!r} is expected at {at}")
            at += 1
            keys.pop()
            value = containers.pop()


def _scalar(text: str, at: int) -> tuple[Any, int]:
    """The string, number or literal at ``at``, and where it ends."""
    if at >= len(text):
        raise ValueError("unexpected end of JSON")
    if text[at] == '"':
        value: tuple[Any, int] = _scanstring(text, at + 1)
        return value
    number = _NUMBER.match(text, at)
    if number is not None:
        digits = number.group(0)
        return (float(digits) if number.group(1) or number.group(2) else _json_int(digits),
                number.end())
    for literal, meaning in _LITERALS.items():
        if text.startswith(literal, at):
            return meaning, at + len(literal)
    raise ValueError(f"unexpected {text[at]!r} at {at}")


def _key(text: str, at: int) -> tuple[str, int]:
    """An object's key at ``at``, and where its value starts."""
    if not text.startswith('"', at):
        raise ValueError(f"a key is expected at {at}")
    key, at = _scanstring(text, at + 1)
    at = _skip(text, at)
    if not text.startswith(":", at):
        raise ValueError(f"':' is expected at {at}")
    return key, _skip(text, at + 1)


def _skip(text: str, at: int) -> int:
    return _SPACE.match(text, at).end()  # type: ignore[union-attr]
