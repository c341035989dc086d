"""The phased run (``plan.PLAN``) with the official Python SDK, UnleashClient, in-process.

The SDK sends on its own timer (``metrics_interval`` is whole seconds: 1 s). A window ends
when two more metrics bodies have arrived after its last call: the first may have been
collected while the window was still being recorded, the second was collected after the
first was answered, so it holds whatever the window left. Then the next window starts.
Phase C records, then calls ``destroy()`` at once: only the SDK's flush on shutdown carries
that window.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

# The official SDK is a dev dependency; a job with only the runtime dependencies and the test
# tools (the lower-bounds job) skips what needs it.
pytest.importorskip("UnleashClient")

from UnleashClient import UnleashClient
from UnleashClient.impact_metrics import MetricFlagContext
from UnleashClient.utils import InstanceAllowType

from tests.sdk import plan
from tests.sdk.front import SdkFront

SDK = "python-unleashclient"
#: Bounds every wait: a window that does not end within it is left as it is (the totals
#: then say what was lost; the run never hangs).
WINDOW_TIMEOUT = 6.0


def wait_for_posts(front: SdkFront, count: int, timeout: float = WINDOW_TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while len(front.metrics_posts()) < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def record(client: Any, window: plan.Window) -> None:
    """Do what the app does in one window, through the SDK's public API."""
    for _ in range(window.on):
        client.is_enabled(plan.ON)
    for _ in range(window.off):
        client.is_enabled(plan.OFF)
    for _ in range(window.colour):
        client.get_variant(plan.COLOUR)
    metrics = client.impact_metrics
    if window.jobs:
        metrics.increment_counter(plan.JOBS, window.jobs)
    if window.checkouts:
        metrics.increment_counter(plan.CHECKOUTS, window.checkouts,
                                  flag_context=MetricFlagContext(flag_names=[plan.COLOUR]))
    if window.queue is not None:
        metrics.update_gauge(plan.QUEUE, window.queue)
    for value in window.latencies:
        metrics.observe_histogram(plan.LATENCY, value)


def run(front: SdkFront, app_name: str, cache_directory: Path, token: str = plan.TOKEN) -> None:
    """Run the whole plan against ``front`` (which relays to a receiver or a server that
    takes ``token``; its environment must be ``plan.ENVIRONMENT``)."""
    client = UnleashClient(
        url=front.api_url, app_name=app_name, environment=plan.ENVIRONMENT,
        instance_id=f"{app_name}-1", refresh_interval=60, metrics_interval=1,
        custom_headers={"Authorization": token}, request_timeout=5, request_retries=0,
        cache_directory=str(cache_directory),
        multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW)
    try:
        client.initialize_client()
        metrics = client.impact_metrics
        metrics.define_counter(plan.JOBS, "Jobs done")
        metrics.define_counter(plan.CHECKOUTS, "Checkouts, by the colour flag's variant")
        metrics.define_gauge(plan.QUEUE, "Jobs waiting")
        metrics.define_histogram(plan.LATENCY, "Job latency", list(plan.BOUNDARIES))
        for window in plan.PLAN:
            front.phase = window.phase
            record(client, window)
            if window.phase != "C":
                wait_for_posts(front, len(front.metrics_posts()) + 2)
    finally:
        client.destroy()  # phase C: the flush on shutdown
