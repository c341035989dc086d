"""A request body's text read as the server's ``JSON.parse`` reads it.

>>> json_document('{"a": [1, 2.5, "\\\\ud800"]}')
{'a': [1, 2.5, '\\ufffd']}
>>> len(json_document("[" * 100_000 + "]" * 100_000))  # past the recursion limit
1
"""

from __future__ import annotations

import json
import re
from typing import Any, Union

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
        document = _DeepParser(text).parse()
    return _without_surrogates(document) if _SURROGATE.search(text) else document


def _json_int(digits: str) -> Union[int, float]:
    return int(digits) if len(digits) < 4000 else float(digits)


def _without_surrogates(value: Any) -> Any:
    """``value`` with every lone surrogate in its strings (keys too) replaced by U+FFFD;
    iterative, as the document may be deeper than Python's recursion limit."""
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


#: What :meth:`_DeepParser._value` answers after opening a container: nothing to place yet.
_OPENED = object()


class _DeepParser:
    """JSON without recursion, for documents nested past the recursion limit: the open
    containers are a list, not the call stack."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = self._skip(0)
        self.open: list[Any] = []  # the containers not yet closed, innermost last
        self.keys: list[str | None] = []  # beside each, an object's pending key

    def parse(self) -> Any:
        while True:
            value = self._value()
            if value is _OPENED:
                continue
            # Place the value, then close every container that ends here.
            while True:
                self.at = self._skip(self.at)
                if not self.open:
                    if self.at != len(self.text):
                        raise ValueError(f"extra data at {self.at}")
                    return value
                if not self._place(value):
                    break
                value = self._close()

    def _value(self) -> Any:
        """The scalar or empty container at ``at``, or ``_OPENED`` after opening one that
        holds values."""
        if self.at >= len(self.text):
            raise ValueError("unexpected end of JSON")
        char = self.text[self.at]
        if char in "{[":
            return self._open(char)
        if char == '"':
            value, self.at = _scanstring(self.text, self.at + 1)
            return value
        number = _NUMBER.match(self.text, self.at)
        if number is not None:
            self.at = number.end()
            digits = number.group(0)
            return float(digits) if number.group(1) or number.group(2) else _json_int(digits)
        for literal, meaning in _LITERALS.items():
            if self.text.startswith(literal, self.at):
                self.at += len(literal)
                return meaning
        raise ValueError(f"unexpected {char!r} at {self.at}")

    def _open(self, char: str) -> Any:
        self.open.append({} if char == "{" else [])
        self.keys.append(None)
        self.at = self._skip(self.at + 1)
        if self.text.startswith("}" if char == "{" else "]", self.at):
            return self._close()
        if char == "{":
            self._key()
        return _OPENED

    def _place(self, value: Any) -> bool:
        """Put ``value`` into the innermost container; True if that container ends here."""
        container = self.open[-1]
        if isinstance(container, dict):
            container[self.keys[-1]] = value
        else:
            container.append(value)
        closer = "}" if isinstance(container, dict) else "]"
        if self.text.startswith(closer, self.at):
            return True
        if not self.text.startswith(",", self.at):
            raise ValueError(f"',' or {closer!r} is expected at {self.at}")
        self.at = self._skip(self.at + 1)
        if isinstance(container, dict):
            self._key()
        return False

    def _close(self) -> Any:
        self.keys.pop()
        self.at += 1
        return self.open.pop()

    def _key(self) -> None:
        """Read an object's key and its colon, up to where its value starts."""
        if not self.text.startswith('"', self.at):
            raise ValueError(f"a key is expected at {self.at}")
        self.keys[-1], at = _scanstring(self.text, self.at + 1)
        at = self._skip(at)
        if not self.text.startswith(":", at):
            raise ValueError(f"':' is expected at {at}")
        self.at = self._skip(at + 1)

    def _skip(self, at: int) -> int:
        return _SPACE.match(self.text, at).end()  # type: ignore[union-attr]

