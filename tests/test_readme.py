"""The README's first two commands are the ones CI runs, and the demo really works."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands():
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_readme_starts_with_the_demo_and_the_test_commands():
    demo, tests = readme_commands()
    assert demo.endswith("python -m impactagent demo")
    assert tests.endswith("python -m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci, "CI must run the README's test command"
    assert "python -m impactagent demo" in ci


def test_demo_accounts_for_every_count():
    result = subprocess.run(
        [sys.executable, "-m", "impactagent", "demo", "--requests", "2000"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "all counts accounted for" in result.stdout
    assert "MISMATCH" not in result.stdout
    rows = dict(re.findall(r"^(requests)\s+([\d,]+)", result.stdout, re.M))
    assert rows == {"requests": "2,000"}
