"""Run in a fresh virtual environment where the built wheel is installed (not the tree): the
demo, then the README's Flask quick start as a user would save it, against the receiver.

Usage, from a directory outside the tree: ``python wheel_smoke.py README.md``. Exits non-zero
on any failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import impactagent
from impactagent.devtools.receiver import Receiver

TOKEN = "default:development.wheel-smoke"
#: Requests through the quick start's app, as its test client sends them: one closed response
#: each (Flask's test client finishes a request when its response is closed).
DRIVE = """
import shop
client = shop.app.test_client()
for user in ("beta-ann", "bob", "carl"):
    client.post(f"/checkout/{user}").close()
shop.agent.close()
"""


def main(readme: Path) -> None:
    where = Path(impactagent.__file__).resolve()
    assert "site-packages" in where.parts, f"impactagent is imported from {where}, not the wheel"
    subprocess.run([sys.executable, "-m", "impactagent", "demo", "--requests", "2000",
                    "--pace", "0"], check=True, timeout=300)
    quick_start = re.search(r"<!-- snippet: quick-start-flask -->\n```python\n(.*?)^```",
                            readme.read_text(), re.S | re.M)
    assert quick_start, f"{readme} has no snippet named quick-start-flask"
    Path("shop.py").write_text(quick_start.group(1))
    with Receiver(strict=True, token=TOKEN) as receiver:
        env = {**os.environ, "UNLEASH_URL": receiver.url, "UNLEASH_API_TOKEN": TOKEN,
               "UNLEASH_APP_NAME": "shop"}
        env.pop("PYTHONPATH", None)
        subprocess.run([sys.executable, "-c", DRIVE], env=env, check=True, timeout=120)
        flags = receiver.totals("shop")["flags"]
        assert receiver.problems() == [], receiver.problems()
    assert flags == {"new-checkout": {"yes": 1, "no": 2, "variants": {"blue": 1}}}, flags
    print(f"wheel smoke: impactagent {impactagent.__version__} from {where.parent}: the demo "
          "and the Flask quick start delivered every count")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
