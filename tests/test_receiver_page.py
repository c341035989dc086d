"""The receiver's page in a real browser: headless Chromium renders what was received, and
a screenshot is kept as a CI artifact (``$IMPACTAGENT_ARTIFACTS``, default ``.ci-artifacts``).

Chromium comes from Debian's ``chromium`` package; ``.ci/run`` installs it and sets
``IMPACTAGENT_REQUIRE_CHROMIUM=1``, so that in CI a missing browser fails instead of skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import impactagent
from impactagent.devtools.receiver import Receiver
from tests import workload

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        if os.environ.get("IMPACTAGENT_REQUIRE_CHROMIUM") == "1":
            pytest.fail("IMPACTAGENT_REQUIRE_CHROMIUM=1 but chromium is not installed")
        pytest.skip("chromium is not installed (apt-get install chromium chromium-driver)")
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", *arguments],
        capture_output=True, text=True, timeout=120, check=True)


def table_rows(dom: str, table: str) -> list:
    """The text of each cell of each body row of ``<table id=table>`` in ``dom``."""
    body = re.search(rf'<table id="{table}">.*?<tbody>(.*?)</tbody>', dom, re.S).group(1)
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
            for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def test_the_page_shows_what_was_received_in_headless_chromium(tmp_path):
    with Receiver() as receiver:
        agent = impactagent.Agent("shop", url=receiver.api_url,
                                  api_key="default:production.page-test")
        expected = workload.record(agent, 30)
        assert agent.close().ok

        dom = chromium(tmp_path, "--dump-dom", receiver.url + "/").stdout
        artifacts = Path(os.environ.get("IMPACTAGENT_ARTIFACTS", ROOT / ".ci-artifacts"))
        artifacts.mkdir(parents=True, exist_ok=True)
        screenshot = artifacts / "receiver-page.png"
        screenshot.unlink(missing_ok=True)
        chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,900",
                 receiver.url + "/")

    flags = {row[3]: (int(row[4]), int(row[5])) for row in table_rows(dom, "flags")}
    assert flags == {name: (f["yes"], f["no"]) for name, f in expected["flags"].items()}
    metrics = {row[1] for row in table_rows(dom, "metrics")}
    assert metrics == {"requests_total", "jobs_total", "latency_seconds", "inflight_requests"}
    assert table_rows(dom, "requests")[0][2] == "202"
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
