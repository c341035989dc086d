"""Would a real Unleash server take this ``ClientMetrics`` body, and take it whole?

unleash-server 8.2.0's rules (``docs/protocol.md``) in its order: the JSON limit, the request
schema (Ajv, coercing), the impact-metrics schema (Joi), the translation metric by metric.

>>> [(p.outcome, p.where) for p in check_body(b'{"appName": ""}')]
[('rejected', 'appName')]
"""

from __future__ import annotations

from dataclasses import dataclass
from reprlib import repr as _shown  # cut short: a body's values may be huge or deep
from typing import Any

from ..core import server_limits as limits
from ..core._numbers import MAX_SAFE
from . import jsvalues as js

#: From worst to mildest.
OUTCOMES = POISONED, TOO_LARGE, REJECTED, DISCARDED, CUT, IGNORED = (
    "poisoned", "too large", "rejected", "discarded", "cut", "ignored")

#: unleash-server's JSON body limit: express.json's default ``100kb``, in bytes.
MAX_BODY = 100 * 1024

_TYPES = ("counter", "gauge", "histogram")
#: String fields of the request schema and their length limits.
_STRINGS = {"instanceId": None, "sdkVersion": None, "platformName": None,
            "platformVersion": None, "yggdrasilVersion": None, "specVersion": None,
            "sdkFlavor": 256, "sdkFlavorVersion": 32}
_LOST_WINDOW = "the server answers 202, then fails to write its window and loses every app's"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a body: what the server does about it, where, and what."""

    outcome: str  # one of OUTCOMES
    where: str  # a JSON path such as "impactMetrics/0/samples/1/labels"
    message: str

    def __str__(self) -> str:
        return f"{self.outcome}: {self.where or '<body>'}: {self.message}"


def parse_body(raw: bytes | str) -> tuple[dict[str, Any] | None, list[Problem]]:
    """The JSON object in ``raw`` as the server reads it (invalid UTF-8 replaced, a leading
    BOM dropped), or why a server cannot read it."""
    text = raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")
    try:
        document = js.json_document(text.removeprefix("\ufeff"))
    except ValueError as error:
        return None, [_rejected("", f"not JSON: {error}")]
    if not isinstance(document, dict):
        return None, [_rejected("", "the body is not a JSON object")]
    return document, []


def check_request(raw: bytes, max_body: int = MAX_BODY) -> list[Problem]:
    """Every problem with the request body ``raw``, its size included."""
    if len(raw) > max_body:
        return [Problem(TOO_LARGE, "", f"{len(raw)} bytes, over the server's JSON limit of "
                        f"{max_body} bytes: it answers 413 and stores nothing")]
    return check_body(raw)


def check_body(raw: bytes) -> list[Problem]:
    """Every problem with the request body ``raw`` (its size aside); empty: stored whole."""
    document, problems = parse_body(raw)
    return problems if document is None else check_document(document)


def check_own_body(raw: bytes) -> list[Problem]:
    """:func:`check_body`, and a bucket required: impactagent always sends one."""
    document, problems = parse_body(raw)
    if document is not None:
        problems = check_document(document)
        if not isinstance(document.get("bucket"), dict):
            problems.append(Problem(REJECTED, "bucket", "missing: impactagent always sends one "
                                    "(servers before 8.0 answer 400 without it)"))
    return problems


def check_document(document: dict[str, Any]) -> list[Problem]:
    """Every problem with a parsed ``ClientMetrics`` document."""
    problems = _request_problems(document)
    if any(p.outcome == REJECTED for p in problems):
        return problems
    metrics = document.get("impactMetrics")
    if not metrics:  # the server skips a falsy impactMetrics: null, [], 0, ""
        return problems
    if not isinstance(metrics, list):
        return [*problems, _discarded("impactMetrics", "not an array")]
    schema = [p for i, metric in enumerate(metrics)
              for p in _metric_schema_problems(f"impactMetrics/{i}", metric)]
    return problems + (schema or _translation_problems(metrics))


def outcome_of(problems: list[Problem]) -> str:
    """The worst outcome among ``problems``, or ``"stored"``."""
    for outcome in OUTCOMES:
        if any(p.outcome == outcome for p in problems):
            return outcome
    return "stored"


def notes(document: dict[str, Any]) -> list[str]:
    """What a real server stores without complaint but is worth knowing."""
    found = []
    if js.ajv_null(document.get("bucket")):
        found.append("bucket: null or missing: 8.x stores the rest; servers before 8.0 "
                     "answer 400")
    metrics = document.get("impactMetrics")
    for i, metric in enumerate(metrics if isinstance(metrics, list) else ()):
        samples = metric.get("samples") if isinstance(metric, dict) else None
        histogram = isinstance(metric, dict) and metric.get("type") == "histogram"
        for j, sample in enumerate(samples if isinstance(samples, list) else ()):
            found += [f"impactMetrics/{i}/samples/{j}{where}: {message}"
                      for where, message in _sample_notes(sample, histogram)]
    return found


def _sample_notes(sample: Any, histogram: bool) -> list[tuple[str, str]]:
    labels = sample.get("labels") if isinstance(sample, dict) else None
    found = []
    if isinstance(labels, dict) and "appName" not in labels:
        found.append(("/labels", "no appName label: the server stores the series without an app"))
    if isinstance(labels, dict) and "" in labels:
        found.append(("/labels", "a label named '': the server stores the series without it"))
    if histogram:
        found += [("", f"{message} (stored as sent)") for message in _histogram_oddities(sample)]
    return found


def _rejected(where: str, message: str) -> Problem:
    return Problem(REJECTED, where, message + " (servers answer 400)")


# -- the request schema (Ajv, coercing) ---------------------------------------------------------

def _request_problems(document: dict[str, Any]) -> list[Problem]:
    problems = _field_problems(document)
    bucket = document.get("bucket")
    if js.ajv_null(bucket):  # Ajv coerces "", 0 and false to null where null is allowed
        return problems
    if not isinstance(bucket, dict):
        return [*problems, _rejected("bucket", "not an object (send null, or leave it out)")]
    problems += _bucket_problems(bucket)
    toggles = bucket.get("toggles", {})
    if not isinstance(toggles, dict):
        return [*problems, _rejected("bucket/toggles", "not an object")]
    written = False  # a row of counts goes to the database
    for flag, toggle in toggles.items():
        found, counted = _toggle_problems(f"bucket/toggles/{flag}", toggle)
        problems += found
        written = written or counted
    if written and not any(p.outcome == REJECTED for p in problems):
        problems += _row_problems(document, bucket)
    return problems


def _field_problems(document: dict[str, Any]) -> list[Problem]:
    problems = []
    app = document.get("appName")
    if app is None or app == "":
        problems.append(_rejected("appName", "missing or empty"))
    elif isinstance(app, (dict, list)):
        problems.append(_rejected("appName", "not a string"))
    for name, limit in _STRINGS.items():
        value = document.get(name)
        if isinstance(value, (dict, list)):
            problems.append(_rejected(name, "not a string"))
        elif limit is not None and isinstance(value, str) and len(value) > limit:
            problems.append(_rejected(name, f"longer than {limit} characters"))
    return problems


def _bucket_problems(bucket: dict[str, Any]) -> list[Problem]:
    problems = [_rejected(f"bucket/{key}", "missing")
                for key in ("start", "stop", "toggles") if key not in bucket]
    return problems + [_rejected(f"bucket/{key}", f"{_shown(bucket[key])} is neither an RFC "
                                 "3339 date-time nor an integer timestamp")
                       for key in ("start", "stop")
                       if key in bucket and js.js_date_ms(bucket[key]) is None]


def _toggle_problems(where: str, toggle: Any) -> tuple[list[Problem], bool]:
    """One flag's problems, and whether it writes a row of counts (yes or no above 0)."""
    if not isinstance(toggle, dict):
        return [_rejected(where, "not an object")], False
    problems = []
    yes, no = _count(toggle.get("yes"), False), _count(toggle.get("no"), True)
    if yes is None:
        problems.append(_rejected(f"{where}/yes", f"{_shown(toggle.get('yes'))} is not a "
                                  "number >= 0"))
    if no is None:
        problems.append(_rejected(f"{where}/no", f"{_shown(toggle.get('no'))} is not an "
                                  "integer >= 0"))
    variants = toggle.get("variants")
    if not js.ajv_null(variants) and not isinstance(variants, dict):
        problems.append(_rejected(f"{where}/variants", "not an object"))
    counted = yes is not None and no is not None and bool(yes or no)
    for variant, n in (variants.items() if isinstance(variants, dict) else ()):
        problems += _variant_problems(f"{where}/variants/{variant}", variant, n, counted)
    if yes == no == 0:
        problems.append(Problem(IGNORED, where, "yes == no == 0: the server skips the flag, "
                                "variants included"))
    elif yes is not None and no is not None and yes != int(yes):
        problems.append(Problem(IGNORED, f"{where}/yes", f"{yes!r} is not a whole count: the "
                                "server adds the window's counts and rounds the sum when it "
                                "writes it"))
    return problems, counted


def _variant_problems(where: str, variant: str, n: Any, counted: bool) -> list[Problem]:
    count = _count(n, True)
    if count is None:
        return [_rejected(where, f"{_shown(n)} is not an integer >= 0")]
    if variant == "" or variant in limits.DROPPED_VARIANT_NAMES:
        return [Problem(IGNORED, where, f"the variant name {variant!r}: the server stores the "
                        "flag's yes and no but not this count")]
    if counted and "\0" in variant:
        return [Problem(POISONED, where, f"a variant name with NUL: {_LOST_WINDOW} variant "
                        "counts in it")]
    if counted and count > limits.MAX_VARIANT_COUNT:
        return [Problem(POISONED, where, f"{count:.0f} is over {limits.MAX_VARIANT_COUNT}: "
                        f"{_LOST_WINDOW} variant counts in it")]
    return []


def _row_problems(document: dict[str, Any], bucket: dict[str, Any]) -> list[Problem]:
    """What fails the write of a flag's row (the receiver also checks the window's sums)."""
    lost = f"{_LOST_WINDOW} flag counts in it"
    app = js.js_string(document["appName"])
    found = []
    if len(app) > limits.MAX_APP_NAME_LENGTH or "\0" in app:
        found.append(Problem(POISONED, "appName", f"longer than {limits.MAX_APP_NAME_LENGTH} "
                             f"characters or holding NUL ({len(app)} characters): {lost}"))
    stop = js.js_date_ms(bucket.get("stop"))
    if stop is not None and stop < js.YEAR_ONE_MS:
        found.append(Problem(POISONED, "bucket/stop", f"before year 1: {lost}"))
    return found


def _count(value: Any, whole: bool) -> float | None:
    """A flag count after Ajv's coercion, or None where the server refuses it."""
    value = js.ajv_number(value)
    if value is None or not 0 <= value <= MAX_SAFE or (whole and value != int(value)):
        return None
    number: float = value
    return number


# -- the impact-metrics schema (Joi, converting) ------------------------------------------------

def _discarded(where: str, message: str) -> Problem:
    return Problem(DISCARDED, where, message + " (the server drops the whole impactMetrics "
                   "array)")


def _metric_schema_problems(where: str, metric: Any) -> list[Problem]:
    if not isinstance(metric, dict):
        return [_discarded(where, "not an object")]
    problems = [_discarded(f"{where}/{key}", f"{_shown(metric.get(key))} is not a non-empty "
                           "string")
                for key in ("name", "help", "type")
                if not isinstance(metric.get(key), str) or not metric[key]]
    buckets = metric.get("buckets")
    if "buckets" in metric and not (isinstance(buckets, list) and all(
            _joi_safe(b) is not None for b in buckets)):
        problems.append(_discarded(f"{where}/buckets", "not an array of numbers"))
    samples = metric.get("samples")
    if not isinstance(samples, list):
        return [*problems, _discarded(f"{where}/samples", "missing or not an array")]
    histogram = metric.get("type") == "histogram"
    return problems + [_discarded(f"{where}/samples/{j}{path}", message)
                       for j, sample in enumerate(samples)
                       for path, message in _sample_problems(sample, histogram)]


def _sample_problems(sample: Any, histogram: bool) -> list[tuple[str, str]]:
    if not isinstance(sample, dict):
        return [("", "not an object")]
    found = [(f"/{field}", f"{_shown(sample.get(field))} is not a safe number (a number or "
              "numeric string, |x| <= 2**53 - 1)")
             for field in (("count", "sum") if histogram else ("value",))
             if _joi_safe(sample.get(field)) is None]
    if histogram:
        found += _histogram_bucket_problems(sample.get("buckets"))
    if "labels" in sample:
        found += _label_problems(sample["labels"])
    return found


def _histogram_bucket_problems(buckets: Any) -> list[tuple[str, str]]:
    if not isinstance(buckets, list):
        return [("/buckets", "missing or not an array")]
    found = []
    for k, bucket in enumerate(buckets):
        if not isinstance(bucket, dict):
            found.append((f"/buckets/{k}", "not an object"))
            continue
        if bucket.get("le") != "+Inf" and _joi_safe(bucket.get("le")) is None:
            found.append((f"/buckets/{k}/le", f"{_shown(bucket.get('le'))} is neither a number"
                          " nor the string '+Inf'"))
        if _joi_safe(bucket.get("count")) is None:
            found.append((f"/buckets/{k}/count", f"{_shown(bucket.get('count'))} is not a "
                          "number"))
    return found


def _label_problems(labels: Any) -> list[tuple[str, str]]:
    if not isinstance(labels, dict):
        return [("/labels", f"{_shown(labels)} is not an object: send {{}} or leave it out")]
    # A label named "" matches no label name: its value is never checked, and dropped.
    return [(f"/labels/{name}", f"{_shown(value)} is neither a non-empty string nor a number")
            for name, value in labels.items()
            if name != "" and not (isinstance(value, str) and value)
            and _joi_safe(value) is None]


def _joi_safe(value: Any) -> float | None:
    number = js.joi_number(value)
    return number if number is not None and -MAX_SAFE <= number <= MAX_SAFE else None


# -- the translation, metric by metric ----------------------------------------------------------

def _translation_problems(metrics: list[dict[str, Any]]) -> list[Problem]:
    """What the server's translation skips or cuts, as far as the body alone tells."""
    problems = []
    kinds: dict[str, str] = {}
    for i, metric in enumerate(metrics):
        where = f"impactMetrics/{i}"
        name = js.sanitize(metric["name"])
        if not js.valid_name(name):
            problems.append(Problem(IGNORED, f"{where}/name", f"{metric['name']!r} does not "
                                    "start with a letter or _: the server skips this metric"))
            continue
        kind = metric["type"]
        if kind not in _TYPES:
            problems.append(Problem(IGNORED, f"{where}/type", f"{kind!r} is not one of "
                                    f"{', '.join(_TYPES)}: the server skips this metric"))
            continue
        if kinds.setdefault(name, kind) != kind:
            return [*problems, cut(f"{where}/type", f"{name!r} is a {kinds[name]} already")]
        found = _sample_translation_problems(where, kind, metric["samples"])
        problems += found
        if found and found[-1].outcome == CUT:
            return problems
    return problems


def _sample_translation_problems(where: str, kind: str, samples: list[Any]) -> list[Problem]:
    problems = []
    for j, sample in enumerate(samples):
        for label in sample.get("labels") or {}:
            if js.sanitize(label) in limits.EXPOSITION_BREAKING_LABELS:
                problems.append(Problem(POISONED, f"{where}/samples/{j}/labels/{label}",
                                        "a label the server stores, after which its "
                                        "impact-metrics exposition fails to parse, for every "
                                        "app"))
        if kind == "counter" and (js.joi_number(sample["value"]) or 0) < 0:
            return [*problems, cut(f"{where}/samples/{j}/value", "a counter cannot go down")]
    return problems


def cut(where: str, reason: str) -> Problem:
    """The translation stops here: what came before it is stored, the rest is lost."""
    return Problem(CUT, where, f"{reason}: the server stores what came before in the array "
                   "and loses this metric and every one after it")


def _histogram_oddities(sample: Any) -> list[str]:
    buckets = sample.get("buckets") if isinstance(sample, dict) else None
    if not isinstance(buckets, list) or not all(isinstance(b, dict) for b in buckets):
        return []
    found = []
    if not buckets or buckets[-1].get("le") != "+Inf":
        found.append("buckets do not end with the string '+Inf'")
    bounds = [js.joi_number(b.get("le")) for b in buckets if b.get("le") != "+Inf"]
    if None not in bounds and bounds != sorted(bounds):  # type: ignore[type-var]
        found.append("le values are not increasing")
    counts = [b.get("count") for b in buckets]
    if all(js.is_number(c) for c in counts):
        if counts != sorted(counts):
            found.append("bucket counts are not cumulative")
        if buckets and buckets[-1].get("le") == "+Inf" and counts[-1] != sample.get("count"):
            found.append("the '+Inf' count differs from the sample's count")
    return found
