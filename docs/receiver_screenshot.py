"""Makes docs/receiver-impact-view.png, the README's picture of the receiver's impact view.

The demo shop (impactagent.devtools.demo) records 30 rounds of requests; after each round
the agent flushes and the receiver's clock moves on 10 seconds, so five minutes of steps are
drawn in a few seconds. Run from the repository root: python docs/receiver_screenshot.py
(needs chromium).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import impactagent
from impactagent.devtools import demo
from impactagent.devtools.receiver import Receiver
from impactagent.devtools.timeseries import SeriesStore

OUT = Path(__file__).resolve().parent / "receiver-impact-view.png"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def main() -> int:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium is not installed", file=sys.stderr)
        return 1
    clock = Clock(1_795_000_000.0)
    with Receiver(series=SeriesStore(clock=clock)) as receiver:
        agent = impactagent.Agent(demo.APP_NAME, url=receiver.api_url,
                                  api_key="default:development.screenshot")
        shop = demo.Shop(agent)
        for round_ in range(30):
            for user in range(round_ * 120, (round_ + 1) * 120):
                shop.handle(user)
            agent.flush()
            clock.now += 10
        clock.now -= 10
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                            "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
                            f"--screenshot={OUT}", "--window-size=1300,1250",
                            receiver.url + "/?window=300"], capture_output=True, timeout=120,
                           check=True)
        agent.close()
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
