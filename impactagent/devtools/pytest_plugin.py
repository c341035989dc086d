"""A pytest fixture (a ``pytest11`` entry point) for your own tests::

    def test_checkout_reports_the_flag(impactagent_receiver):
        agent = impactagent.Agent("shop", url=impactagent_receiver.api_url,
                                  api_key="default:development.test")
        run_checkout(agent)
        agent.flush()
        assert impactagent_receiver.totals("shop")["flags"]["new-checkout"]["yes"] == 1
        assert impactagent_receiver.problems() == []
"""

from __future__ import annotations

from typing import Iterator

import pytest

from .receiver import Receiver


@pytest.fixture
def impactagent_receiver() -> Iterator[Receiver]:
    """A strict receiver (a body a real server would cut is answered 400), for one test."""
    with Receiver(strict=True) as receiver:
        yield receiver
