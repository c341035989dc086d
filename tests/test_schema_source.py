"""The vendored OpenAPI copy is the seed's, and the validator catches what it should."""

from pathlib import Path

import pytest

from tests.schema import OPENAPI, SHIPPED, derived_schema, validate_client_metrics

SEED = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "000_a8f21e947f2a0d79.txt"


@pytest.mark.skipif(not SEED.exists(), reason="the seed documents are not beside this clone")
def test_vendored_schema_is_the_seeds():
    vendored = OPENAPI.read_text().split("\n", 2)[2]
    assert vendored in SEED.read_text()


def test_the_shipped_schema_is_derived_from_the_vendored_openapi():
    import json

    assert json.loads(SHIPPED.read_text()) == derived_schema()


GOOD = {
    "appName": "shop",
    "bucket": {"start": "2026-11-25T00:00:00.000Z", "stop": "2026-11-25T00:01:00.000Z",
               "toggles": {"f": {"yes": 1, "no": 0, "variants": {}}}},
    "impactMetrics": [{"name": "h", "help": "H", "type": "histogram", "samples": [
        {"labels": {"appName": "shop", "environment": "e"}, "count": 2, "sum": 1.5,
         "buckets": [{"le": 1.0, "count": 1}, {"le": "+Inf", "count": 2}]}]}],
}


def test_a_good_document_passes():
    validate_client_metrics(GOOD)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("impactMetrics", 0, "type"), "summary", "impactMetrics/0"),
        (("impactMetrics", 0, "samples", 0, "labels"), None, "None is not an object"),
        (("impactMetrics", 0, "samples", 0, "buckets", 1, "le"), "Inf", "impactMetrics"),
        (("impactMetrics", 0, "samples", 0, "count"), 3, "'\\+Inf' count differs"),
        (("bucket", "start"), "yesterday", "neither an RFC 3339 date-time"),
        (("bucket", "toggles", "f", "yes"), 0, "yes == no == 0"),
        (("impactMetrics", 0, "samples", 0, "sum"), float("nan"), "NaN"),
    ],
)
def test_bad_documents_are_caught(path, value, message):
    import copy

    document = copy.deepcopy(GOOD)
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(AssertionError, match=message):
        validate_client_metrics(document)
