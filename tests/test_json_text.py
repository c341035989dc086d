"""A body's text read as the server's ``JSON.parse`` reads it: a document nested past
Python's recursion limit (which the server reads) is read, or refused, exactly as the same
document nested shallowly, with a ValueError (the receiver's 400) and never a crash."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impactagent.server_rules.jsvalues import json_document


def _past_json_loads() -> int:
    """A depth the standard json module cannot read (3.13 reads deeper than 3.12)."""
    for depth in (4_000, 20_000, 100_000, 500_000):
        try:
            json.loads("[" * depth + "]" * depth)
        except RecursionError:
            return depth
    raise RuntimeError("json.loads read 500,000 nested arrays")


DEEP = _past_json_loads()

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=8)


def read(text: str) -> object:
    try:
        return json_document(text)
    except ValueError:
        return ValueError


@settings(max_examples=150, deadline=None)
@given(VALUES, st.sampled_from([("[", "]", lambda d: d[0]), ('{"k":', "}", lambda d: d["k"]),
                                 ('{"k": [', "]}", lambda d: d["k"][0])]))
def test_a_value_nested_past_the_recursion_limit_reads_as_it_does_shallow(value, ends):
    opener, closer, inside = ends
    document = json_document(opener * DEEP + json.dumps(value) + closer * DEEP)
    with pytest.raises(RecursionError):
        json.loads(opener * DEEP + json.dumps(value) + closer * DEEP)  # the path is taken
    for _ in range(DEEP):
        document = inside(document)
    assert document == json.loads(json.dumps(value))


@st.composite
def near_json(draw: st.DrawFn) -> str:
    """JSON text with one character inserted, replaced or removed: mostly just invalid."""
    text = json.dumps(draw(VALUES), indent=draw(st.sampled_from([None, 1])))
    at = draw(st.integers(0, len(text)))
    char = draw(st.sampled_from('[]{}",: 0123456789.eE-+tfalsenu\\x\n'))
    how = draw(st.sampled_from(["insert", "replace", "remove"]))
    return text[:at] + (char if how != "remove" else "") + text[at + (how != "insert"):]


@settings(max_examples=400, deadline=None)
@given(near_json())
def test_deep_text_is_refused_exactly_where_shallow_text_is(fragment):
    deep, shallow = read("[" * DEEP + fragment + "]" * DEEP), read("[" + fragment + "]")
    assert (deep is ValueError) == (shallow is ValueError), (fragment, deep, shallow)
