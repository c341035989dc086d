"""The vendored OpenAPI copy is the seed's, and the validator catches what it should."""

from pathlib import Path

import pytest

from tests.schema import OPENAPI, SHIPPED, derived_schema, validate_client_metrics

#: The seed documents are the pages this project started from: copies of Unleash's API
#: reference (000 is https://docs.getunleash.io/api/post-metrics, with the OpenAPI document of
#: POST /api/client/metrics; 001 and 002 the admin APIs for charts and instance statistics).
#: They are kept outside the repository, in ``shared/seeds/`` beside the checkout, on the
#: machines the project is built on; a clone elsewhere has only the vendored copy,
#: ``tests/data/client-metrics.openapi.yaml``, which the other tests here use.
SEED = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "000_a8f21e947f2a0d79.txt"

NO_SEED = (
    f"compares tests/data/client-metrics.openapi.yaml with the seed it was copied from, "
    f"{SEED.name} (Unleash's POST /api/client/metrics reference page, "
    f"https://docs.getunleash.io/api/post-metrics), kept in ../shared/seeds/ beside the "
    f"checkout on the project's own machines; this clone has no such directory, so there is "
    f"nothing to compare with (the vendored copy is still used by the tests below)")


@pytest.mark.skipif(not SEED.exists(), reason=NO_SEED)
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
