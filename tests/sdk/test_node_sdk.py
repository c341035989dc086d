"""The official Node SDK (unleash-client 6.12.1, pinned in tests/e2e's lock file) against the
receiver, in default and strict mode: the phased run of ``tests.sdk.plan`` with a 200 ms
metrics interval, every body answered as unleash-server 8.2.0 answers it, and the receiver's
totals exactly what the app did. Marked e2e: it needs the npm install of the e2e stack."""

from __future__ import annotations

import pytest

from impactagent.devtools.receiver import Receiver
from tests.sdk import checks, node_sdk
from tests.sdk.front import SdkFront

APP = "sdk-run-node"

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("strict", [False, True], ids=["default", "strict"])
def test_node_sdk_phased_run_is_answered_as_a_real_server_and_adds_up(strict):
    with Receiver(strict=strict) as receiver, SdkFront(receiver.url) as front:
        node_sdk.run(front, APP)
        checks.assert_answered_as_a_real_server(front)
        phases = checks.assert_phases_ran(front)
        # No flag evaluated in a window: this SDK sends a bucket without toggles.
        assert all(body["bucket"]["toggles"] == {} for body in phases["B"] + phases["C"])
        checks.assert_totals_exact(receiver, APP)
