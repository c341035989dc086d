"""Named bodies on which the receiver once disagreed with unleash-server 8.2.0, with what the
server answered and stored (measured against a running server; the e2e differential test,
``tests/e2e/test_differential.py``, sends every one of them to both again).

Each case: the body, the status the server answers, and what it stores, in the shape of
``Receiver.totals()`` for the case's app (``flags``, ``counters``, ``gauges``,
``histograms``) and for series without an app (``unattributed``).
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Tuple

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

# Issue 22: what a generator found the receiver or check got wrong against 8.2.0 (measured
# against the server on PostgreSQL 15).
CASES.update({
    # Ajv coerces "", 0 and false to null where null is allowed: no bucket, no variants.
    **{f"bucket_{name}_is_null": Case(
        {"appName": APP, "bucket": value, "impactMetrics": [counter(f"rules_b{name}_total", 1)]},
        counters={(f"rules_b{name}_total", labels()): 1})
       for name, value in (("empty", ""), ("zero", 0), ("false", False))},
    **{f"variants_{name}_are_null": Case(
        {"appName": APP, "bucket": bucket(yes=2, no=0, variants=value)},
        flags={FLAG: {"yes": 2, "no": 0, "variants": {}}})
       for name, value in (("empty", ""), ("zero", 0), ("false", False))},
    "numeric_string_timestamp_is_a_date": Case(
        {"appName": APP, "bucket": {**bucket(yes=1, no=0), "start": str(_ms(-10)),
                                    "stop": str(_ms(0))}},
        flags={FLAG: {"yes": 1, "no": 0, "variants": {}}}),
    # Number(): hexadecimal, binary and blank strings are counts.
    "hex_binary_and_blank_counts_are_numbers": Case(
        {"appName": APP, "bucket": bucket(yes="0x10", no="0b11", variants={"blue": " "})},
        flags={FLAG: {"yes": 16, "no": 3, "variants": {"blue": 0}}}),
    "underscored_count_is_rejected": Case(
        {"appName": APP, "bucket": bucket(yes="1_000", no=0)}, status=400, strict_status=400),
    "arabic_indic_digits_are_rejected": Case(
        {"appName": APP, "bucket": bucket(yes="\u0661\u0660", no=0)}, status=400,
        strict_status=400),
    **{f"date_{name}_is_rejected": Case(
        {"appName": APP, "bucket": {**bucket(yes=1, no=0), "stop": value}}, status=400,
        strict_status=400)
       for name, value in (("offset_without_minutes", "2026-12-05T10:00:00+00"),
                           ("offset_of_24_hours", "2026-12-05T10:00:00+24:00"),
                           ("leap_second", "2026-12-31T23:59:60Z"),
                           ("past_javascripts_dates", 8_640_000_000_000_001))},
    # A label named "" is left out of the series; the rest of the array is stored.
    "empty_label_name_is_left_out": Case(
        {"appName": APP, "impactMetrics": [counter("rules_emptyname_total", 2, **{"": "x"})]},
        counters={("rules_emptyname_total", labels()): 2}),
    # A label named "" matches no name the schema knows: its value is never checked (1e21
    # is beyond 2**53 - 1, and stored all the same), and the label is dropped.
    "empty_label_name_value_is_not_checked": Case(
        {"appName": APP, "impactMetrics": [counter("rules_emptyunchecked_total", 4,
                                                   **{"": 1e21})]},
        counters={("rules_emptyunchecked_total", labels()): 4}),
    # Joi refuses a numeric string that loses digits: the whole array goes.
    "imprecise_decimal_string_discards_the_array": Case(
        {"appName": APP, "impactMetrics": [counter("rules_precise_total", 1),
                                           counter("rules_imprecise_total",
                                                   "1.0000000000000001")]},
        strict_status=400),
    # prom-client keys a counter's series by "name:value," joined: these two are one series,
    # shown with the labels it was first seen with.
    "comma_in_a_label_value_collides": Case(
        {"appName": APP, "impactMetrics": [metric("rules_collide_total", "counter", [
            {"labels": {**ENV, "x1": "p,x2:q"}, "value": 1},
            {"labels": {**ENV, "x1": "p", "x2": "q"}, "value": 2}])]},
        counters={("rules_collide_total", labels(x1="p,x2:q")): 3}),
    # A histogram's label 1 and "1" are two series; they print alike, and the later one is
    # what the exposition (and so the read-back) shows.
    "histogram_number_and_string_labels_are_two_series": Case(
        {"appName": APP, "impactMetrics": [metric("rules_hist_types", "histogram", [
            {"labels": {**ENV, "n": 1}, "count": 1, "sum": 0.5,
             "buckets": [{"le": 1, "count": 1}, {"le": "+Inf", "count": 1}]},
            {"labels": {**ENV, "n": "1"}, "count": 2, "sum": 4,
             "buckets": [{"le": 1, "count": 0}, {"le": "+Inf", "count": 2}]}])]},
        histograms={("rules_hist_types", labels(n="1")): {"count": 2, "sum": 4,
                                                          "buckets": {1.0: 0, "+Inf": 2}}}),
    # A lone surrogate is text: stored as U+FFFD.
    "lone_surrogate_is_a_replacement_character": Case(
        {"appName": APP, "impactMetrics": [counter("rules_surrogate_total", 1,
                                                   s="a\ud800b")]},
        counters={("rules_surrogate_total", labels(s="a\ufffdb")): 1}),
    # __proto__ is dropped (it never becomes a key); constructor is stored (measured on
    # 8.2.0, against the report); the flag's yes and no are stored.
    "proto_variant_name_is_dropped": Case(
        {"appName": APP, "bucket": bucket(yes=3, no=0, variants={
            "__proto__": 1, "constructor": 1, "blue": 1})},
        flags={FLAG: {"yes": 3, "no": 0, "variants": {"blue": 1, "constructor": 1}}},
        strict_status=400),
})

#: Raw bodies (not JSON documents one can build): name -> (bytes, status).
RAW_CASES: Dict[str, Any] = {
    "invalid_utf8_is_replaced_not_refused": (b'{"appName": "rules\xff"}', 202),
    "byte_order_mark_is_dropped": (b'\xef\xbb\xbf{"appName": "rules"}', 202),
    "array_body_is_rejected": (b"[]", 400),
    "empty_body_is_rejected": (b"", 400),
    # JSON.parse has no depth limit; the receiver dropped the connection.
    "deep_nesting_in_an_ignored_field_is_taken": (
        b'{"appName": "rules", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}", 202),
    # JavaScript reads every number as a double; Python's int() refuses 4,300 digits.
    "a_5000_digit_integer_in_an_ignored_field_is_taken": (
        b'{"appName": "rules", "x": ' + b"7" * 5000 + b"}", 202),
}

#: The same body sent with other headers: name -> (headers, body bytes, status). The body
#: is stored whenever the status is 202.
TRANSPORT_BODY = {"appName": APP, "impactMetrics": [counter("rules_transport_total", 1)]}
TRANSPORT_CASES: Dict[str, Any] = {
    **{f"content_type_{name}_is_415": ({"Content-Type": value} if value else {}, None, 415)
       for name, value in (("missing", None), ("text_plain", "text/plain"),
                           ("form", "application/x-www-form-urlencoded"),
                           ("vnd_api_json", "application/vnd.api+json"),
                           ("charset_latin1", "application/json; charset=latin1"))},
    "gzip_is_inflated": ({"Content-Encoding": "gzip"}, "gzip", 202),
    "deflate_is_inflated": ({"Content-Encoding": "deflate"}, "deflate", 202),
    "brotli_is_415": ({"Content-Encoding": "br"}, None, 415),
    "utf16_with_its_charset_is_decoded": (
        {"Content-Type": "application/json; charset=utf-16"}, "utf-16", 202),
    "upper_case_media_type_is_json": ({"Content-Type": "Application/JSON"}, None, 202),
}


def transport_request(name: str, token: str) -> Tuple[Dict[str, str], bytes, int]:
    """The headers (the token's ``Authorization`` included), bytes and expected status of a
    transport case."""
    extra, encoding, status = TRANSPORT_CASES[name]
    raw = json.dumps(TRANSPORT_BODY).encode()
    if encoding == "gzip":
        raw = gzip.compress(raw)
    elif encoding == "deflate":
        raw = zlib.compress(raw)
    elif encoding == "utf-16":
        raw = json.dumps(TRANSPORT_BODY).encode("utf-16")
    headers = {"Authorization": token, "Content-Type": "application/json", **extra}
    if "Content-Type" not in extra and name == "content_type_missing_is_415":
        del headers["Content-Type"]
    return headers, raw, status


@dataclass
class WindowCase:
    """Bodies sent within one of the server's write windows, with a canary app's body among
    them: what is stored per app once the window is written, and whether the write fails."""

    bodies: List[Dict[str, Any]]
    stored: Dict[str, Dict[str, Any]]  # app -> flags, as Receiver.totals(app)["flags"]
    fails: bool = False


CANARY = "rules-canary"


def _canary() -> Dict[str, Any]:
    return {"appName": CANARY, "bucket": bucket(yes=1, no=1, variants={"blue": 1})}


def _window(*bodies: Dict[str, Any], stored: Dict[str, Any], fails: bool = False
            ) -> WindowCase:
    return WindowCase([*bodies, _canary()], stored, fails)


_CANARY_WHOLE = {FLAG: {"yes": 1, "no": 1, "variants": {"blue": 1}}}
_CANARY_NO_VARIANTS = {FLAG: {"yes": 1, "no": 1, "variants": {}}}
_LONG = "r" * 256
WINDOW_CASES: Dict[str, WindowCase] = {
    # Fractional yes values are summed over the window, then rounded: 0.5 + 0.5 is 1.
    "fractional_yes_is_summed_before_rounding": _window(
        {"appName": APP, "bucket": bucket(yes=0.5, no=0)},
        {"appName": APP, "bucket": bucket(yes=0.5, no=0)},
        stored={APP: {FLAG: {"yes": 1, "no": 0, "variants": {}}}, CANARY: _CANARY_WHOLE}),
    # An integer column: past 2**31 - 1 the variants write fails for every app.
    "variant_over_int32_loses_every_apps_variants": _window(
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={"blue": 2**31})},
        stored={APP: {FLAG: {"yes": 1, "no": 0, "variants": {}}}, CANARY: _CANARY_NO_VARIANTS},
        fails=True),
    "variants_summed_over_int32_lose_every_apps_variants": _window(
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={"blue": 2**30})},
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={"blue": 2**30})},
        stored={APP: {FLAG: {"yes": 2, "no": 0, "variants": {}}}, CANARY: _CANARY_NO_VARIANTS},
        fails=True),
    # Names of Object.prototype, merged over one app, flag and hour (measured on 8.2.0):
    # in both bodies, summed; held and missing from the later body, dropped without a
    # word; in the later body only, the merge adds a count to the prototype's function and
    # every app's variant counts of the window are lost.
    "prototype_name_in_both_bodies_is_summed": _window(
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={"toString": 1})},
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={"toString": 1})},
        stored={APP: {FLAG: {"yes": 2, "no": 0, "variants": {"toString": 2}}},
                CANARY: _CANARY_WHOLE}),
    "prototype_name_held_then_missing_is_dropped": _window(
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={"constructor": 1})},
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={"blue": 1})},
        stored={APP: {FLAG: {"yes": 2, "no": 0, "variants": {"blue": 1}}},
                CANARY: _CANARY_WHOLE}),
    "prototype_name_held_then_null_variants_is_dropped": _window(
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={"toString": 1})},
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants=None)},
        stored={APP: {FLAG: {"yes": 2, "no": 0, "variants": {}}}, CANARY: _CANARY_WHOLE}),
    "prototype_name_in_a_later_body_loses_every_apps_variants": _window(
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={})},
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={"toString": 1})},
        stored={APP: {FLAG: {"yes": 2, "no": 0, "variants": {}}}, CANARY: _CANARY_NO_VARIANTS},
        fails=True),
    # What the failing merge wrote is dropped again by a later body without the name (the
    # corpus differential's rules bodies did that), and kept by one with it.
    "prototype_text_is_dropped_by_a_later_body_without_it": _window(
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={"blue": 1})},
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={"toString": 1})},
        {"appName": APP, "bucket": bucket(yes=1, no=0)},
        stored={APP: {FLAG: {"yes": 3, "no": 0, "variants": {"blue": 1}}},
                CANARY: _CANARY_WHOLE}),
    "prototype_text_stays_when_the_name_comes_again": _window(
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={"blue": 1})},
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={"toString": 1})},
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={"toString": 1})},
        stored={APP: {FLAG: {"yes": 3, "no": 0, "variants": {}}}, CANARY: _CANARY_NO_VARIANTS},
        fails=True),
    "prototype_names_mixed_lose_every_apps_variants": _window(
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={"toString": 1,
                                                                  "valueOf": 1})},
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={"toString": 1,
                                                                  "constructor": 1})},
        stored={APP: {FLAG: {"yes": 2, "no": 0, "variants": {}}}, CANARY: _CANARY_NO_VARIANTS},
        fails=True),
    # No NUL in PostgreSQL text: a variant name with one loses every app's variants.
    "nul_in_a_variant_name_loses_every_apps_variants": _window(
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={"a\u0000b": 1})},
        stored={APP: {FLAG: {"yes": 1, "no": 0, "variants": {}}}, CANARY: _CANARY_NO_VARIANTS},
        fails=True),
    # varchar(255), and no NUL in PostgreSQL text: every app's counts of the window go.
    "long_app_name_loses_every_apps_counts": _window(
        {"appName": _LONG, "bucket": bucket(yes=1, no=0)}, stored={_LONG: {}, CANARY: {}},
        fails=True),
    "nul_in_app_name_loses_every_apps_counts": _window(
        {"appName": "rules\u0000nul", "bucket": bucket(yes=1, no=0)},
        stored={"rules\u0000nul": {}, CANARY: {}}, fails=True),
    "stop_before_year_one_loses_every_apps_counts": _window(
        {"appName": APP, "bucket": {**bucket(yes=1, no=0), "start": "0000-01-01T00:00:00Z",
                                    "stop": "0000-01-01T00:00:10Z"}},
        stored={APP: {}, CANARY: {}}, fails=True),
    # A name of Object.prototype alone in the window is stored.
    "to_string_once_is_stored": _window(
        {"appName": APP, "bucket": bucket(yes=1, no=0, variants={"toString": 1})},
        stored={APP: {FLAG: {"yes": 1, "no": 0, "variants": {"toString": 1}}},
                CANARY: _CANARY_WHOLE}),
}
