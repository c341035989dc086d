"""Is this ``ClientMetrics`` body one a real Unleash server would take, and take whole?

The rules are unleash-server 8.2.0's, read from its code and checked body by body against a
running server (``tests/e2e/test_differential.py``). A body meets them in this order:

1. the JSON limit: over 102400 bytes (express.json's ``100kb``, counted in raw bytes) is
   ``413`` (:data:`TOO_LARGE`); the bytes are decoded as UTF-8 with invalid sequences
   replaced and a byte-order mark dropped, so neither is an error;
2. the request schema (OpenAPI, checked by Ajv *with type coercion*): not JSON, not an
   object, no ``appName`` (or ``""``, ``null``), an object where a string belongs, a bad
   bucket (no ``start``/``stop``/``toggles``, a date that is neither an RFC 3339 date-time
   nor an integer, a negative or non-integer ``no``/variant count, a count beyond
   ``2**53 - 1``) is ``400`` (:data:`REJECTED`). ``"bucket": null`` or no bucket at all
   is fine: the body carries impact metrics only. Coercion means ``"yes": "3"`` counts 3
   and ``"no": true`` counts 1;
3. the impact-metrics schema (Joi, converting): one metric in ``impactMetrics`` with no or an
   empty ``name``/``help``/``type``, ``"labels": null``, a label value that is empty, a
   bool or ``null``, a value that is not a number (``true``) or a numeric string, or one
   beyond ``2**53 - 1``, makes the server drop the *whole* array and still answer 202
   (:data:`DISCARDED`);
4. translation, metric by metric, in order: a name that does not start with a letter or
   ``_`` once sanitised, or a type other than counter/gauge/histogram, skips that metric
   (:data:`IGNORED`); a negative counter value, or a second type for one name, stops the
   translation there: what came before is stored, the rest of the array is lost
   (:data:`CUT`);
5. flags with ``yes == no == 0`` are skipped, variants included, and a fractional ``yes``
   is rounded when written (:data:`IGNORED`).

What a real server stores without complaint is not a problem here, however odd: histogram
buckets that are not cumulative, samples without an ``appName`` label (the SDKs send unused
metrics as ``labels: {}``), a null bucket. :func:`notes` says what is odd about them.

>>> [p.message for p in check_body(b'{"appName": "shop", "bucket": null, "x": NaN}')]
['not JSON: NaN is not a JSON value (servers answer 400)']
>>> check_body(b'{"appName": "shop", "bucket": null}')
[]
>>> [(p.outcome, p.where) for p in check_body(b'{"appName": ""}')]
[('rejected', 'appName')]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, Union

from ._jsvalues import (
    YEAR_ONE_MS,
    ajv_null,
    ajv_number,
    is_number,
    joi_number,
    js_date_ms,
    js_string,
    json_document,
    sanitize,
    shown,
    valid_name,
)
from ._numbers import MAX_SAFE
from .server_limits import (
    DROPPED_VARIANT_NAMES,
    EXPOSITION_BREAKING_LABELS,
    MAX_APP_NAME_LENGTH,
    MAX_VARIANT_COUNT,
)

POISONED = "poisoned"
TOO_LARGE = "too large"
REJECTED = "rejected"
DISCARDED = "discarded"
CUT = "cut"
IGNORED = "ignored"
#: The outcomes from worst to mildest; ``outcome_of`` picks the first that applies. The worst
#: is a body the server answers 202 and then loses other apps' data for.
OUTCOMES = (POISONED, TOO_LARGE, REJECTED, DISCARDED, CUT, IGNORED)

#: unleash-server's JSON body limit: express.json's default ``100kb``, in bytes.
MAX_BODY = 100 * 1024

_TYPES = ("counter", "gauge", "histogram")
#: String fields of the request schema; an object or array there is a 400.
_STRINGS = {"instanceId": None, "sdkVersion": None, "platformName": None,
            "platformVersion": None, "yggdrasilVersion": None, "specVersion": None,
            "sdkFlavor": 256, "sdkFlavorVersion": 32}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a body: what the server does about it, where, and what."""

    outcome: str  # one of OUTCOMES
    where: str  # a JSON path such as "impactMetrics/0/samples/1/labels"
    message: str

    def __str__(self) -> str:
        return f"{self.outcome}: {self.where or '<body>'}: {self.message}"


def parse_body(raw: Union[bytes, str]) -> Tuple[Optional[Dict[str, Any]], List[Problem]]:
    """The JSON document in ``raw`` (bytes as sent, or text already decoded), or the reason
    it is not one a server can read.

    As the server reads it: invalid UTF-8 is replaced, not refused, a leading byte-order mark
    is dropped, nesting has no depth limit, and a lone surrogate is text (stored as U+FFFD)."""
    text = raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")
    try:
        document = json_document(text.removeprefix("\ufeff"))
    except ValueError as error:
        return None, [Problem(REJECTED, "", f"not JSON: {error} (servers answer 400)")]
    if not isinstance(document, dict):
        return None, [Problem(REJECTED, "", "the body is not a JSON object (servers answer "
                              "400)")]
    return document, []


def check_request(raw: bytes, max_body: int = MAX_BODY) -> List[Problem]:
    """Every problem with the request body ``raw``, its size included: what ``check`` and the
    receiver hold a body to."""
    if len(raw) > max_body:
        return [Problem(TOO_LARGE, "", f"{len(raw)} bytes, over the server's JSON limit of "
                        f"{max_body} bytes: it answers 413 and stores nothing")]
    return check_body(raw)


def check_body(raw: bytes) -> List[Problem]:
    """Every problem with the request body ``raw`` (its size aside); empty: stored whole."""
    document, problems = parse_body(raw)
    return problems if document is None else check_document(document)


def check_own_body(raw: bytes) -> List[Problem]:
    """:func:`check_body`, and a bucket required: what impactagent itself writes and resends
    (it always sends one, as servers before 8.0 answer 400 without it)."""
    problems = check_body(raw)
    document, _ = parse_body(raw)
    if document is not None and not isinstance(document.get("bucket"), dict):
        problems.append(Problem(REJECTED, "bucket", "missing: impactagent always sends one "
                                "(servers before 8.0 answer 400 without it)"))
    return problems


def check_document(document: Dict[str, Any]) -> List[Problem]:
    """Every problem with a parsed ``ClientMetrics`` document."""
    problems = _request_problems(document)
    if any(p.outcome == REJECTED for p in problems):
        return problems
    metrics = document.get("impactMetrics")
    if metrics:  # the server skips a falsy impactMetrics: null, [], 0, ""
        schema = _impact_schema_problems(metrics)
        problems += schema or _translation_problems(metrics)
    return problems


def outcome_of(problems: List[Problem]) -> str:
    """What a real server does with a body with these problems: the worst outcome, or
    ``"stored"``."""
    for outcome in OUTCOMES:
        if any(p.outcome == outcome for p in problems):
            return outcome
    return "stored"


def notes(document: Dict[str, Any]) -> List[str]:
    """What a real 8.2.0 server stores without complaint but is worth knowing (``check``
    prints them; they are not problems, and ``--strict`` does not refuse them)."""
    found = []
    bucket = document.get("bucket")
    if ajv_null(bucket):
        found.append("bucket: null or missing: 8.x stores the rest; servers before 8.0 "
                     "answer 400")
    metrics = document.get("impactMetrics")
    for i, metric in enumerate(metrics if isinstance(metrics, list) else ()):
        samples = metric.get("samples") if isinstance(metric, dict) else None
        for j, sample in enumerate(samples if isinstance(samples, list) else ()):
            labels = sample.get("labels") if isinstance(sample, dict) else None
            if isinstance(labels, dict) and "appName" not in labels:
                found.append(f"impactMetrics/{i}/samples/{j}/labels: no appName label: the "
                             "server stores the series without an app")
            if isinstance(labels, dict) and "" in labels:
                found.append(f"impactMetrics/{i}/samples/{j}/labels: a label named '': the "
                             "server stores the series without it")
            if isinstance(metric, dict) and metric.get("type") == "histogram":
                found += [f"impactMetrics/{i}/samples/{j}: {message} (stored as sent)"
                          for message in _histogram_oddities(sample)]
    return found


# -- 2. the request schema ---------------------------------------------------------------------

def _request_problems(document: Dict[str, Any]) -> List[Problem]:
    problems: List[Problem] = []

    def rejected(where: str, message: str) -> None:
        problems.append(Problem(REJECTED, where, message + " (servers answer 400)"))

    app = document.get("appName")
    if app is None or app == "":
        rejected("appName", "missing or empty")
    elif isinstance(app, (dict, list)):
        rejected("appName", "not a string")
    for name, limit in _STRINGS.items():
        value = document.get(name)
        if isinstance(value, (dict, list)):
            rejected(name, "not a string")
        elif limit is not None and isinstance(value, str) and len(value) > limit:
            rejected(name, f"longer than {limit} characters")
    bucket = document.get("bucket")
    if ajv_null(bucket):  # Ajv coerces "", 0 and false to null where null is allowed
        return problems
    if not isinstance(bucket, dict):
        rejected("bucket", "not an object (send null, or leave it out)")
        return problems
    for key in ("start", "stop", "toggles"):
        if key not in bucket:
            rejected(f"bucket/{key}", "missing")
    for key in ("start", "stop"):
        if key in bucket and js_date_ms(bucket[key]) is None:
            rejected(f"bucket/{key}", f"{shown(bucket[key])} is neither an RFC 3339 date-time "
                     "nor an integer timestamp")
    toggles = bucket.get("toggles", {})
    if not isinstance(toggles, dict):
        rejected("bucket/toggles", "not an object")
        return problems
    written = False  # a row of counts goes to the database
    for flag, toggle in toggles.items():
        where = f"bucket/toggles/{flag}"
        if not isinstance(toggle, dict):
            rejected(where, "not an object")
            continue
        yes, no = _count(toggle.get("yes"), False), _count(toggle.get("no"), True)
        if yes is None:
            rejected(f"{where}/yes", f"{shown(toggle.get('yes'))} is not a number >= 0")
        if no is None:
            rejected(f"{where}/no", f"{shown(toggle.get('no'))} is not an integer >= 0")
        variants = toggle.get("variants")
        if not ajv_null(variants) and not isinstance(variants, dict):
            rejected(f"{where}/variants", "not an object")
        counted = yes is not None and no is not None and bool(yes or no)
        for variant, n in (variants.items() if isinstance(variants, dict) else ()):
            count = _count(n, True)
            if count is None:
                rejected(f"{where}/variants/{variant}", f"{shown(n)} is not an integer >= 0")
            elif variant == "" or variant in DROPPED_VARIANT_NAMES:
                # Measured on 8.2.0: 202, yes and no stored, this variant's count not.
                problems.append(Problem(IGNORED, f"{where}/variants/{variant}",
                                        f"the variant name {variant!r}: the server stores "
                                        "the flag's yes and no but not this count"))
            elif counted and "\0" in variant:
                problems.append(Problem(POISONED, f"{where}/variants/{variant}", "a variant "
                                        "name with NUL: the server answers 202, then fails "
                                        "to write its window and loses every app's variant "
                                        "counts in it"))
            elif counted and count > MAX_VARIANT_COUNT:
                problems.append(Problem(POISONED, f"{where}/variants/{variant}", f"{count:.0f} "
                                        f"is over {MAX_VARIANT_COUNT}: the server answers 202, "
                                        "then fails to write its window and loses every "
                                        "app's variant counts in it"))
        written = written or counted
        if yes is None or no is None:
            continue
        if yes == 0 and no == 0:
            problems.append(Problem(IGNORED, where, "yes == no == 0: the server skips the "
                                    "flag, variants included"))
        elif yes != int(yes):
            problems.append(Problem(IGNORED, f"{where}/yes", f"{yes!r} is not a whole count:"
                                    " the server adds the window's counts and rounds the sum "
                                    "when it writes it"))
    if written and not any(p.outcome == REJECTED for p in problems):
        problems += _row_problems(document, bucket)
    return problems


def _row_problems(document: Dict[str, Any], bucket: Dict[str, Any]) -> List[Problem]:
    """What makes the server fail the write of a flag's row, losing every app's counts of
    that write window (the body alone tells; the receiver also sees the window's sums)."""
    lost = ("the server answers 202, then fails to write its window and loses every app's "
            "flag counts in it")
    app = js_string(document["appName"])
    found = []
    if len(app) > MAX_APP_NAME_LENGTH or "\0" in app:
        found.append(Problem(POISONED, "appName", f"longer than {MAX_APP_NAME_LENGTH} "
                             f"characters or holding NUL ({len(app)} characters): {lost}"))
    stop = js_date_ms(bucket.get("stop"))
    if stop is not None and stop < YEAR_ONE_MS:
        found.append(Problem(POISONED, "bucket/stop", f"before year 1: {lost}"))
    return found


def _count(value: Any, whole: bool) -> Optional[float]:
    """A flag count after Ajv's coercion (``null`` 0, ``true`` 1, ``"3"`` 3, ``"0x10"`` 16,
    ``" "`` 0), or None when the server refuses it: negative, past 2**53 - 1, or
    (``whole``) not an integer."""
    value = ajv_number(value)
    if value is None or not 0 <= value <= MAX_SAFE:
        return None
    if whole and value != int(value):
        return None
    number: float = value
    return number


# -- 3. the impact-metrics schema --------------------------------------------------------------

def _impact_schema_problems(metrics: Any) -> List[Problem]:
    problems: List[Problem] = []

    def discarded(where: str, message: str) -> None:
        problems.append(Problem(DISCARDED, where, message + " (the server drops the whole "
                                "impactMetrics array)"))

    if not isinstance(metrics, list):
        discarded("impactMetrics", "not an array")
        return problems
    for i, metric in enumerate(metrics):
        where = f"impactMetrics/{i}"
        if not isinstance(metric, dict):
            discarded(where, "not an object")
            continue
        for key in ("name", "help", "type"):
            if not isinstance(metric.get(key), str) or not metric[key]:
                discarded(f"{where}/{key}", f"{shown(metric.get(key))} is not a non-empty string")
        buckets = metric.get("buckets")
        if "buckets" in metric and not (isinstance(buckets, list) and all(
                _joi_safe(b) is not None for b in buckets)):
            discarded(f"{where}/buckets", "not an array of numbers")
        samples = metric.get("samples")
        if not isinstance(samples, list):
            discarded(f"{where}/samples", "missing or not an array")
            continue
        histogram = metric.get("type") == "histogram"
        for j, sample in enumerate(samples):
            for path, message in _sample_problems(sample, histogram):
                discarded(f"{where}/samples/{j}{path}", message)
    return problems


def _sample_problems(sample: Any, histogram: bool) -> List[Tuple[str, str]]:
    if not isinstance(sample, dict):
        return [("", "not an object")]
    found = []
    numbers = ("count", "sum") if histogram else ("value",)
    for field in numbers:
        if _joi_safe(sample.get(field)) is None:
            found.append((f"/{field}", f"{shown(sample.get(field))} is not a safe number (a "
                          "number or numeric string, |x| <= 2**53 - 1)"))
    if histogram:
        buckets = sample.get("buckets")
        if not isinstance(buckets, list):
            found.append(("/buckets", "missing or not an array"))
        for k, bucket in enumerate(buckets if isinstance(buckets, list) else ()):
            if not isinstance(bucket, dict):
                found.append((f"/buckets/{k}", "not an object"))
                continue
            if bucket.get("le") != "+Inf" and _joi_safe(bucket.get("le")) is None:
                found.append((f"/buckets/{k}/le", f"{shown(bucket.get('le'))} is neither a number"
                              " nor the string '+Inf'"))
            if _joi_safe(bucket.get("count")) is None:
                found.append((f"/buckets/{k}/count", f"{shown(bucket.get('count'))} is not a "
                              "number"))
    if "labels" in sample:
        labels = sample["labels"]
        if not isinstance(labels, dict):
            found.append(("/labels", f"{shown(labels)} is not an object: send {{}} or leave it "
                          "out"))
        for name, value in (labels.items() if isinstance(labels, dict) else ()):
            if name == "":
                continue  # no label name matches it: its value is never checked, and dropped
            if not (isinstance(value, str) and value) and _joi_safe(value) is None:
                found.append((f"/labels/{name}", f"{shown(value)} is neither a non-empty string "
                              "nor a number"))
    return found


def _joi_safe(value: Any) -> Optional[float]:
    number = joi_number(value)
    return number if number is not None and -MAX_SAFE <= number <= MAX_SAFE else None


# -- 4. translation ----------------------------------------------------------------------------

def _translation_problems(metrics: List[Dict[str, Any]]) -> List[Problem]:
    """What the server's translation skips or cuts, as far as the body alone tells (the
    receiver adds what depends on metrics registered by earlier bodies)."""
    problems = []
    kinds: Dict[str, str] = {}
    for i, metric in enumerate(metrics):
        where = f"impactMetrics/{i}"
        name = sanitize(metric["name"])
        if not valid_name(name):
            problems.append(Problem(IGNORED, f"{where}/name", f"{metric['name']!r} does not "
                                    "start with a letter or _: the server skips this metric"))
            continue
        kind = metric["type"]
        if kind not in _TYPES:
            problems.append(Problem(IGNORED, f"{where}/type", f"{kind!r} is not one of "
                                    f"{', '.join(_TYPES)}: the server skips this metric"))
            continue
        if kinds.setdefault(name, kind) != kind:
            problems.append(cut(f"{where}/type", f"{name!r} is a {kinds[name]} already"))
            return problems
        for j, sample in enumerate(metric["samples"]):
            for label in sample.get("labels") or {}:
                if sanitize(label) in EXPOSITION_BREAKING_LABELS:
                    problems.append(Problem(POISONED, f"{where}/samples/{j}/labels/{label}",
                                            "a label the server stores, after which its "
                                            "impact-metrics exposition fails to parse, for "
                                            "every app"))
            if kind == "counter" and (joi_number(sample["value"]) or 0) < 0:
                problems.append(cut(f"{where}/samples/{j}/value", "a counter cannot go down"))
                return problems
    return problems


def cut(where: str, reason: str) -> Problem:
    """The translation stops here: what came before it is stored, the rest is lost."""
    return Problem(CUT, where, f"{reason}: the server stores what came before in the array "
                   "and loses this metric and every one after it")


def _histogram_oddities(sample: Any) -> List[str]:
    buckets = sample.get("buckets") if isinstance(sample, dict) else None
    if not isinstance(buckets, list) or not all(isinstance(b, dict) for b in buckets):
        return []
    found = []
    if not buckets or buckets[-1].get("le") != "+Inf":
        found.append("buckets do not end with the string '+Inf'")
    bounds = [joi_number(b.get("le")) for b in buckets if b.get("le") != "+Inf"]
    if None not in bounds and bounds != sorted(bounds):  # type: ignore[type-var]
        found.append("le values are not increasing")
    counts = [b.get("count") for b in buckets]
    if all(is_number(c) for c in counts):
        if counts != sorted(counts):
            found.append("bucket counts are not cumulative")
        if buckets and buckets[-1].get("le") == "+Inf" and counts[-1] != sample.get("count"):
            found.append("the '+Inf' count differs from the sample's count")
    return found
