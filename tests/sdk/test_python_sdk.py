"""The official Python SDK (UnleashClient 6.9.1, a dev dependency) against the receiver, in
default and strict mode: the phased run of ``tests.sdk.plan``, every body answered as
unleash-server 8.2.0 answers it, and the receiver's totals exactly what the app did.

The run takes a few seconds: the SDK's shortest metrics interval is one second."""

from __future__ import annotations

import pytest

from impactagent.devtools.receiver import Receiver
from tests.sdk import checks, python_sdk
from tests.sdk.front import SdkFront

APP = "sdk-run-python"


@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
def test_python_sdk_phased_run_is_answered_as_a_real_server_and_adds_up(strict, tmp_path):
    with Receiver(strict=strict) as receiver, SdkFront(receiver.url) as front:
        python_sdk.run(front, APP, tmp_path)
        checks.assert_answered_as_a_real_server(front)
        phases = checks.assert_phases_ran(front)
        # No flag evaluated in a window: this SDK sends "bucket": null (its shutdown flush too).
        assert all(body["bucket"] is None for body in phases["B"] + phases["C"])
        checks.assert_totals_exact(receiver, APP)
