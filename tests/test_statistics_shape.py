"""``Agent.statistics()`` is what its TypedDicts say: the same keys at every level, every value
of its declared type, for an agent with every part and for one that only records."""

import typing
from typing import Any, Dict, Optional

import impactagent
from impactagent.agent_statistics import Statistics
from impactagent.devtools.receiver import Receiver

TOKEN = "default:development.statistics-shape"


def assert_shape(value: Any, declared: Any, where: str, *, present: Optional[set] = None
                 ) -> None:
    """``value`` is of the type ``declared`` (a TypedDict, Dict[str, int], Optional[...])."""
    origin = typing.get_origin(declared)
    if typing.is_typeddict(declared):
        hints = typing.get_type_hints(declared)
        required = set(declared.__required_keys__)
        assert isinstance(value, dict), f"{where} is {type(value).__name__}, not a dict"
        assert required <= set(value) <= set(hints), (
            f"{where}: missing {sorted(required - set(value))}, "
            f"not declared {sorted(set(value) - set(hints))}")
        if present is not None:
            assert set(value) == present, f"{where}: {sorted(value)} != {sorted(present)}"
        for key, item in value.items():
            assert_shape(item, hints[key], f"{where}[{key!r}]")
    elif origin is typing.Union:
        options = typing.get_args(declared)
        if value is None:
            assert type(None) in options, f"{where} is None, declared {declared}"
        else:
            [kind] = [o for o in options if o is not type(None)]
            assert_shape(value, kind, where)
    elif origin is dict:
        key_type, value_type = typing.get_args(declared)
        assert isinstance(value, dict), where
        for key, item in value.items():
            assert isinstance(key, key_type), f"{where}: key {key!r}"
            assert_shape(item, value_type, f"{where}[{key!r}]")
    else:
        assert isinstance(value, declared) and not (
            declared is int and isinstance(value, bool)), (
            f"{where} is {value!r}, declared {declared.__name__}")


def test_an_agent_with_every_part_has_every_key(tmp_path):
    with Receiver(strict=True, token=TOKEN) as receiver:
        agent = impactagent.Agent("shop", url=receiver.url, api_key=TOKEN,
                                  spool_dir=str(tmp_path / "spool"), handle_sigterm=False)
        try:
            agent.counter("checkout_total", "Completed checkouts").inc()
            agent.record_flag("new-checkout", True, "blue")
            assert agent.start().flush(timeout=10).ok
            statistics = agent.statistics()
        finally:
            agent.close(timeout=5)
    assert_shape(statistics, Statistics, "statistics()",
                 present=set(typing.get_type_hints(Statistics)))
    assert statistics["delivery"]["delivered_bodies"] == 1


def test_an_agent_that_only_records_has_the_required_keys():
    agent = impactagent.Agent("shop")
    agent.gauge("queue_depth", "Jobs").set(3)
    statistics: Dict[str, Any] = dict(agent.statistics())
    assert_shape(statistics, Statistics, "statistics()",
                 present=set(Statistics.__required_keys__))
