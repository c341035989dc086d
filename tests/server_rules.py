"""Named bodies on which the receiver once disagreed with unleash-server 8.2.0, with what the
server answered and stored (measured against a running server; the e2e differential test,
``tests/e2e/test_differential.py``, sends every one of them to both again).

Each case: the body, the status the server answers, and what it stores, in the shape of
``Receiver.totals()`` for the case's app (``flags``, ``counters``, ``gauges``,
``histograms``) and for series without an app (``unattributed``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List

APP = "rules"
ENV = {"appName": APP, "environment": "development"}


def labels(**extra: str) -> frozenset:
    return frozenset({**ENV, **extra}.items())


def metric(name: str, kind: str, samples: List[Dict[str, Any]], help: str = "h"
           ) -> Dict[str, Any]:
    return {"name": name, "help": help, "type": kind, "samples": samples}


def counter(name: str, value: Any, **extra: Any) -> Dict[str, Any]:
    return metric(name, "counter", [{"labels": {**ENV, **extra}, "value": value}])


#: A flag the e2e test creates on the server (counts for unknown flags are not stored).
FLAG = "rules-flag"


def bucket(**toggle: Any) -> Dict[str, Any]:
    stop = datetime.now(timezone.utc)
    return {"start": (stop - timedelta(seconds=10)).isoformat(), "stop": stop.isoformat(),
            "toggles": {FLAG: toggle}}


def _ms(seconds: float) -> int:
    """Milliseconds since 1970, ``seconds`` from now: an integer timestamp."""
    return int((datetime.now(timezone.utc).timestamp() + seconds) * 1000)


@dataclass
class Case:
    body: Dict[str, Any]
    status: int = 202
    flags: Dict[str, Any] = field(default_factory=dict)
    counters: Dict[Any, Any] = field(default_factory=dict)
    gauges: Dict[Any, Any] = field(default_factory=dict)
    histograms: Dict[Any, Any] = field(default_factory=dict)
    unattributed: Dict[Any, Any] = field(default_factory=dict)  # series without appName
    strict_status: int = 202  # what --strict answers


CASES: Dict[str, Case] = {
    # The Python SDK 6.9.1 sends "bucket": null when no flag was evaluated: 8.2.0 stores it
    # (its schema marks the bucket nullable); strict mode must not refuse it either.
    "null_bucket_is_stored": Case(
        {"appName": APP, "bucket": None, "impactMetrics": [counter("rules_null_total", 2)]},
        counters={("rules_null_total", labels()): 2}),
    "missing_bucket_is_stored": Case(
        {"appName": APP, "impactMetrics": [counter("rules_nobucket_total", 3)]},
        counters={("rules_nobucket_total", labels()): 3}),
    # Both SDKs send metrics defined but unused as labels {} with value 0: the server stores
    # a series of no app, not one of the sender's.
    "empty_labels_are_a_series_of_no_app": Case(
        {"appName": APP, "bucket": None, "impactMetrics": [
            metric("rules_unused_total", "counter", [{"labels": {}, "value": 0}])]},
        unattributed={"counters": {("rules_unused_total", frozenset()): 0}}),
    # Joi converts: a numeric string is a number.
    "numeric_string_value_is_a_number": Case(
        {"appName": APP, "impactMetrics": [counter("rules_strval_total", "5")]},
        counters={("rules_strval_total", labels()): 5}),
    "numeric_string_le_is_a_bound": Case(
        {"appName": APP, "impactMetrics": [metric("rules_lestr", "histogram", [
            {"labels": ENV, "count": 1, "sum": 0.5,
             "buckets": [{"le": "0.5", "count": 1}, {"le": "+Inf", "count": 1}]}])]},
        histograms={("rules_lestr", labels()): {"count": 1, "sum": 0.5,
                                                "buckets": {0.5: 1, "+Inf": 1}}}),
    # Names are sanitised, not refused; a name that cannot start a metric skips that one.
    "dashed_name_is_sanitised": Case(
        {"appName": APP, "impactMetrics": [counter("rules-dashed-total", 1)]},
        counters={("rules_dashed_total", labels()): 1}, strict_status=202),
    "digit_name_skips_only_that_metric": Case(
        {"appName": APP, "impactMetrics": [counter("1rules_total", 1),
                                           counter("rules_after_digit_total", 2)]},
        counters={("rules_after_digit_total", labels()): 2}, strict_status=400),
    "unknown_type_skips_only_that_metric": Case(
        {"appName": APP, "impactMetrics": [
            metric("rules_summary", "summary", [{"labels": ENV, "value": 1}]),
            counter("rules_after_summary_total", 4)]},
        counters={("rules_after_summary_total", labels()): 4}, strict_status=400),
    # Label names are sanitised; values are printed as JavaScript prints numbers.
    "label_names_sanitised_values_as_javascript_prints_them": Case(
        {"appName": APP, "impactMetrics": [counter("rules_labels_total", 1, **{
            "new-checkout": "on", "tiny": 1e-7, "half": 2.50})]},
        counters={("rules_labels_total", labels(new_checkout="on", tiny="1e-7",
                                                half="2.5")): 1}),
    # A negative counter value stops the translation: what came before stays.
    "negative_counter_cuts_the_rest_of_the_array": Case(
        {"appName": APP, "impactMetrics": [
            metric("rules_neg_total", "counter", [{"labels": {**ENV, "x": "1"}, "value": 1},
                                                  {"labels": {**ENV, "x": "2"}, "value": -1},
                                                  {"labels": {**ENV, "x": "3"}, "value": 1}]),
            metric("rules_neg_after", "gauge", [{"labels": ENV, "value": 3}])]},
        counters={("rules_neg_total", labels(x="1")): 1}, strict_status=400),
    # An empty label value is refused by Joi's string(): the whole array goes.
    "empty_label_value_discards_the_array": Case(
        {"appName": APP, "impactMetrics": [counter("rules_ok_total", 1),
                                           counter("rules_emptylab_total", 1, a="")]},
        strict_status=400),
    "fractional_counter_is_stored": Case(
        {"appName": APP, "impactMetrics": [counter("rules_frac_total", 1.5)]},
        counters={("rules_frac_total", labels()): 1.5}),
    # Ajv coerces before anything: a number is an app name, an object is not an instanceId.
    "numeric_app_name_is_a_string": Case({"appName": 5, "bucket": None}),
    "object_instance_id_is_rejected": Case({"appName": APP, "instanceId": {}}, status=400,
                                           strict_status=400),
    "long_sdk_flavor_version_is_rejected": Case(
        {"appName": APP, "sdkFlavorVersion": "x" * 33}, status=400, strict_status=400),
    # The server decodes invalid UTF-8 with replacement characters rather than refusing it.
    "impact_metrics_not_an_array_discards_only_them": Case(
        {"appName": APP, "impactMetrics": {"a": 1}}, strict_status=400),
    # Ajv coerces flag counts: "3" is 3, true is 1, null is 0.
    "flag_counts_are_coerced": Case(
        {"appName": APP, "bucket": bucket(yes="3", no=True, variants=None)},
        flags={FLAG: {"yes": 3, "no": 1, "variants": {}}}),
    "null_yes_is_zero": Case(
        {"appName": APP, "bucket": bucket(yes=None, no=2)},
        flags={FLAG: {"yes": 0, "no": 2, "variants": {}}}),
    # A fractional yes passes the schema (a number) and is rounded by PostgreSQL on write.
    "fractional_yes_is_rounded": Case(
        {"appName": APP, "bucket": bucket(yes=1.5, no=1)},
        flags={FLAG: {"yes": 2, "no": 1, "variants": {}}}, strict_status=400),
    "fractional_no_is_rejected": Case(
        {"appName": APP, "bucket": bucket(yes=1, no=1.5)}, status=400, strict_status=400),
    "bucket_without_toggles_is_rejected": Case(
        {"appName": APP, "bucket": {k: v for k, v in bucket(yes=1).items() if k != "toggles"}},
        status=400, strict_status=400),
    "integer_timestamps_are_dates": Case(
        {"appName": APP, "bucket": {**bucket(yes=1, no=0), "start": _ms(-10), "stop": _ms(0)}},
        flags={FLAG: {"yes": 1, "no": 0, "variants": {}}}),
    "null_or_bool_dates_are_rejected": Case(
        {"appName": APP, "bucket": {**bucket(yes=1, no=0), "start": None, "stop": True}},
        status=400, strict_status=400),
    "numeric_string_counts_are_counts": Case(
        {"appName": APP, "bucket": bucket(yes="1e3", no="2")},
        flags={FLAG: {"yes": 1000, "no": 2, "variants": {}}}),
    # A variant named "" is dropped silently: yes, no and the other variants are stored.
    "empty_variant_name_is_not_stored": Case(
        {"appName": APP, "bucket": bucket(yes=2, no=0, variants={"": 1, "blue": 1})},
        flags={FLAG: {"yes": 2, "no": 0, "variants": {"blue": 1}}}, strict_status=400),
    "fractional_timestamp_is_rejected": Case(
        {"appName": APP, "bucket": {**bucket(yes=1, no=0), "start": 5.5}}, status=400,
        strict_status=400),
}

#: Raw bodies (not JSON documents one can build): name -> (bytes, status).
RAW_CASES: Dict[str, Any] = {
    "invalid_utf8_is_replaced_not_refused": (b'{"appName": "rules\xff"}', 202),
    "byte_order_mark_is_dropped": (b'\xef\xbb\xbf{"appName": "rules"}', 202),
    "array_body_is_rejected": (b"[]", 400),
    "empty_body_is_rejected": (b"", 400),
}
