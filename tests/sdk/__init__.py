"""The official Unleash SDKs (Python UnleashClient, Node unleash-client) run against the
receiver, and the corpus of the bodies they send (tests/data/corpus, ``python -m
tests.sdk.capture``)."""

import pytest

# The shared checks are plain asserts in a helper module: let pytest explain their failures.
pytest.register_assert_rewrite("tests.sdk.checks")
