"""Configuration that forgives: no UNLEASH_URL records only, a base URL works with or without
/api, and UnleashClient's MetricFlagContext is taken where its SDK takes it."""

import logging

import pytest

import impactagent
from impactagent.devtools.receiver import Receiver

TOKEN = "default:development.forgiving-config"


def totals_of(receiver, app):
    counters = receiver.totals(app)["counters"]
    return {name: value for (name, _labels), value in counters.items()}


def test_from_env_without_a_url_records_only_and_says_so_once(caplog):
    caplog.set_level(logging.INFO, logger="impactagent")
    agent = impactagent.Agent.from_env({"UNLEASH_APP_NAME": "shop"}).start()
    agent.counter("checkout_total", "Completed checkouts").inc(3)
    agent.record_flag("new-checkout", True)
    result = agent.close()
    statistics = agent.statistics()
    assert statistics["recorded"]["counter_increments"] == 3
    assert statistics["delivery"]["attempts"] == 0
    assert statistics["delivery"]["registration"]["attempts"] == 0
    assert result.skipped == "no url configured" and result.delivered_bodies == 0
    lines = [r for r in caplog.records if r.name.startswith("impactagent")]
    assert [(r.levelno, r.name) for r in lines] == [(logging.INFO, "impactagent.agent")]
    assert "UNLEASH_URL is not set: recording only" in lines[0].getMessage()
    assert not lines[0].getMessage().startswith("impactagent")  # the logger's name shows it


def test_from_env_without_a_url_needs_no_token_but_a_url_still_needs_one():
    assert impactagent.Agent.from_env({"UNLEASH_APP_NAME": "shop"}).settings.url is None
    with pytest.raises(ValueError, match="UNLEASH_API_TOKEN is not set"):
        impactagent.Agent.from_env({"UNLEASH_APP_NAME": "shop",
                                    "UNLEASH_URL": "http://127.0.0.1:9"})
    with pytest.raises(ValueError, match="UNLEASH_APP_NAME is not set"):
        impactagent.Agent.from_env({})


@pytest.mark.parametrize("suffix", ["", "/", "/api", "/api/"])
def test_the_base_url_delivers_with_or_without_api(suffix):
    with Receiver(strict=True, token=TOKEN) as receiver:
        agent = impactagent.Agent.from_env({"UNLEASH_URL": receiver.url + suffix,
                                            "UNLEASH_API_TOKEN": TOKEN,
                                            "UNLEASH_APP_NAME": "shop",
                                            "IMPACTAGENT_REGISTER": "0"})
        agent.counter("checkout_total", "Completed checkouts").inc(2)
        assert agent.flush().ok
        agent.close()
        assert totals_of(receiver, "shop") == {"checkout_total": 2}
        assert receiver.problems() == []
    assert agent.settings.url == receiver.api_url


def test_a_base_path_is_kept_and_a_query_refused():
    from impactagent.delivery.settings import SettingsError, api_url

    assert api_url("https://h.example/unleash") == "https://h.example/unleash/api"
    assert impactagent.Agent("shop", url="https://h.example/unleash/", api_key="t").settings \
        .metrics_url == "https://h.example/unleash/api/client/metrics"
    for url in ("https://h.example/api?x=1", "https://h.example#top"):
        with pytest.raises(SettingsError, match="without a query"):
            impactagent.Agent("shop", url=url, api_key="t")


def test_a_refused_url_is_shown_without_its_password():
    from impactagent.delivery.settings import SettingsError

    for url in ("ftp://ops:hunter2-pass@h.example", "https://ops:hunter2-pass@h.example?x=1"):
        with pytest.raises(SettingsError) as refused:
            impactagent.Agent("shop", url=url, api_key="t")
        assert "hunter2-pass" not in str(refused.value) and "h.example" in str(refused.value)


# -- the UnleashClient spelling ----------------------------------------------------------------


def test_a_metric_flag_context_labels_by_the_flags_state_in_the_request():
    agent = impactagent.Agent("shop")
    agent.define_counter("checkout_total", "Checkouts", flags=["new-checkout"])
    agent.define_gauge("cart_items", "Items", flags=["new-checkout"])
    agent.define_histogram("checkout_seconds", "Duration", flags=["new-checkout"])
    MetricFlagContext = pytest.importorskip("UnleashClient.impact_metrics").MetricFlagContext
    context = MetricFlagContext(flag_names=["new-checkout"], context={"userId": "ann"})
    with impactagent.flag_scope():
        agent.record_flag("new-checkout", True, "blue")
        agent.increment_counter("checkout_total", 2, context)
        agent.update_gauge("cart_items", 4, context)
        agent.observe_histogram("checkout_seconds", 0.2, context)
    [payload] = agent.build_payloads(agent.collect())
    labels = {metric["name"]: [sample["labels"]["new_checkout"] for sample in metric["samples"]]
              for metric in payload.document["impactMetrics"]}
    assert labels == {name: ["blue"]
                      for name in ("checkout_total", "cart_items", "checkout_seconds")}


def test_a_metric_flag_context_naming_a_flag_the_metric_lacks_says_how_to_define_it():
    agent = impactagent.Agent("shop")
    agent.define_counter("checkout_total", "Checkouts")
    MetricFlagContext = pytest.importorskip("UnleashClient.impact_metrics").MetricFlagContext
    context = MetricFlagContext(flag_names=["new-checkout"])
    with pytest.raises(ValueError, match=r"define_counter\(\.\.\., flags=\['new-checkout'\]\)"):
        agent.increment_counter("checkout_total", 1, context)
    with pytest.raises(TypeError, match="mapping of label names to values or an UnleashClient"):
        agent.increment_counter("checkout_total", 1, ["route"])  # type: ignore[arg-type]
    assert agent.statistics()["recorded"]["counter_increments"] == 0  # nothing recorded
