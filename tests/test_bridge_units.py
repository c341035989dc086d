"""The small pieces the bridges and the integrations' settings are made of, one by one."""

import pytest

from impactagent.delivery.settings import SettingsError
from impactagent.integrations._bridged import (
    CounterReadings,
    HistogramReadings,
    native_label,
    native_name,
)
from impactagent.integrations._config import IntegrationOptions


def test_a_counter_reading_sends_whole_units_and_carries_the_fraction():
    readings = CounterReadings()
    assert [readings.delta("a", t) for t in (3.0, 5.5, 6.0)] == [3, 2, 1]


def test_a_lower_counter_total_is_a_restart_counted_in_full():
    readings = CounterReadings()
    readings.delta("a", 6.0)
    assert readings.delta("a", 2.0) == 2


def test_a_new_start_is_a_restart_whatever_the_total():
    readings = CounterReadings()
    readings.delta("a", 6.0)
    assert readings.delta("a", 4.0, start=99.0) == 4
    assert readings.delta("a", 4.0, start=99.0) == 0


def test_a_copy_of_readings_is_independent():
    readings = CounterReadings()
    readings.delta("a", 3.0)
    copy = CounterReadings(readings)
    assert type(copy) is CounterReadings
    assert copy.delta("a", 5.0) == 2
    assert readings.delta("a", 4.0) == 1
    histograms = HistogramReadings()
    histograms.delta("h", [1, 0], 0.5)
    other = HistogramReadings(histograms)
    assert type(other) is HistogramReadings
    assert other.delta("h", [1, 2], 1.5) == ((0, 2), 1.0)
    assert histograms.delta("h", [1, 1], 1.0) == ((0, 1), 0.5)


def test_native_names_are_what_the_server_takes():
    assert native_name("http.server.duration") == "http_server_duration"
    assert native_name("job:rate5m", "app_") == "app_job_rate5m"


def test_reserved_label_names_are_renamed():
    assert native_label("environment") == "exported_environment"
    assert native_label("le", histogram=True) == "exported_le"
    assert native_label("route") == "route"


def test_integration_options_split_agent_settings_from_their_own():
    options = IntegrationOptions.split({"app_name": "shop", "flags": ["new-checkout"]})
    assert (options.agent_settings, options.flags) == ({"app_name": "shop"},
                                                       ("new-checkout",))


def test_a_misspelt_integration_setting_is_an_error():
    with pytest.raises(SettingsError, match="IMPACTAGENT: unknown setting 'app_nmae' "
                                            r"\(an Agent "):
        IntegrationOptions.split({"app_nmae": "shop"})
