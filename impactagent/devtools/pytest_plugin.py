"""A pytest fixture for your own tests: assert what your app reports to Unleash.

Installed with impactagent (a ``pytest11`` entry point), so the fixture is just there::

    def test_checkout_reports_the_flag(impactagent_receiver):
        agent = impactagent.Agent("shop", url=impactagent_receiver.api_url,
                                  api_key="default:development.test")
        run_checkout(agent)
        agent.flush()
        assert impactagent_receiver.totals("shop")["flags"]["new-checkout"]["yes"] == 1
        assert impactagent_receiver.problems() == []

The receiver is strict: a body a real server would silently cut (a metric with
``"labels": null``, say) is answered 400 rather than 202, so the test sees it.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from .receiver import Receiver


@pytest.fixture
def impactagent_receiver() -> Iterator[Receiver]:
    """A strict development receiver on 127.0.0.1 (a free port), for one test."""
    with Receiver(strict=True) as receiver:
        yield receiver
