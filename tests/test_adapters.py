"""The OpenFeature hook and the UnleashClient wrapper, with the real libraries."""

from __future__ import annotations

import pytest

import impactagent
from impactagent.core.flag_context import flag_scope


@pytest.fixture
def agent():
    with flag_scope():
        yield impactagent.Agent("shop")


def series(metric):
    return {child.label_values: child.value for child in metric.series()}


def test_the_openfeature_hook_counts_each_evaluation_and_labels_metrics(agent):
    pytest.importorskip("openfeature")
    from openfeature import api
    from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

    from impactagent.integrations.openfeature import ImpactHook

    api.set_provider(InMemoryProvider({
        "new-checkout": InMemoryFlag("on", {"on": True, "off": False}),
        "theme": InMemoryFlag("dark", {"dark": "#000", "light": "#fff"}),
    }), domain="impactagent-test")
    client = api.get_client(domain="impactagent-test")
    client.add_hooks([ImpactHook(agent)])
    checkouts = agent.counter("checkout_total", "Checkouts", flags=("new-checkout", "theme"))

    with flag_scope():
        assert client.get_boolean_value("new-checkout", False) is True
        assert client.get_string_value("theme", "#fff") == "#000"
        checkouts.inc()
    with flag_scope():
        assert client.get_boolean_value("missing", False) is False  # an error: not counted
        checkouts.inc()

    toggles = agent.collect().toggles
    assert {name: (t.yes, t.no, t.variants) for name, t in toggles.items()} == {
        "new-checkout": (1, 0, {"on": 1}), "theme": (1, 0, {"dark": 1})}
    assert series(checkouts) == {("on", "dark"): 1, ("not_evaluated", "not_evaluated"): 1}


def test_the_unleash_client_wrapper_labels_metrics_and_counts_nothing_twice(agent, tmp_path):
    pytest.importorskip("UnleashClient")
    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache

    from impactagent.integrations.unleash_client import FlagAwareClient

    cache = FileCache("impactagent-test", directory=str(tmp_path))
    cache.bootstrap_from_dict({"version": 1, "features": [
        {"name": "new-checkout", "enabled": True,
         "strategies": [{"name": "default", "parameters": {}}],
         "variants": [{"name": "blue", "weight": 1000, "weightType": "variable",
                       "stickiness": "default"}]},
        {"name": "old-search", "enabled": False, "strategies": []},
    ]})
    client = UnleashClient("http://127.0.0.1:9/api", "shop", disable_metrics=True,
                           disable_registration=True, cache=cache)
    client.initialize_client(fetch_toggles=False)
    try:
        unleash = FlagAwareClient(client)
        checkouts = agent.counter("checkout_total", "Checkouts",
                                  flags=("new-checkout", "old-search"))
        with flag_scope():
            assert unleash.get_variant("new-checkout", {"userId": "ann"})["name"] == "blue"
            assert unleash.is_enabled("old-search") is False
            checkouts.inc()
        with flag_scope():
            assert unleash.is_enabled("new-checkout") is True
            checkouts.inc()
        assert unleash.is_initialized  # everything else is the client's
    finally:
        client.destroy()

    assert series(checkouts) == {("blue", "disabled"): 1, ("enabled", "not_evaluated"): 1}
    assert agent.collect().toggles == {}  # the SDK counts its own evaluations


def test_a_variant_without_a_name_is_never_counted_as_one(agent):
    # unleash-server 8.2.0 stores a flag's yes and no and drops a variant named "" without
    # a word (tests/server_rules.py, empty_variant_name_is_not_stored): it is never sent.
    with pytest.raises(ValueError, match="a variant needs a name"):
        agent.record_flag("new-checkout", True, "")
    with pytest.raises(ValueError, match="a variant needs a name"):
        agent.record_flag("new-checkout", True, type("Shade", (str,), {})(""))

    @agent.flag("theme")
    def theme(answer):
        return answer

    theme("")  # falsy, and no variant's name: a "no"
    theme({"name": "", "enabled": True})  # an answer object without a variant name: a "yes"
    pytest.importorskip("openfeature")
    from openfeature import api
    from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

    from impactagent.integrations.openfeature import ImpactHook

    api.set_provider(InMemoryProvider({"banner": InMemoryFlag("", {"": True})}),
                     domain="impactagent-empty-variant")
    client = api.get_client(domain="impactagent-empty-variant")
    client.add_hooks([ImpactHook(agent)])
    assert client.get_boolean_value("banner", False) is True
    toggles = agent.collect().toggles
    assert {name: (t.yes, t.no, t.variants) for name, t in toggles.items()} == {
        "theme": (1, 1, {}), "banner": (1, 0, {})}
