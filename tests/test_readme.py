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


def test_the_readme_commands_work_in_a_fresh_copy(tmp_path):
    """Both commands, as written, in a copy of the tracked files with a brand-new virtual
    environment. The test command is run with --collect-only: running the whole suite
    inside itself would prove nothing more (CI runs it from a clean clone)."""
    import os
    import shutil

    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listed.returncode != 0:
        import pytest

        pytest.skip("not a git checkout: no list of tracked files to copy")
    clone = tmp_path / "clone"
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {**os.environ, "VIRTUAL_ENV": str(venv),
           "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    demo, tests = readme_commands()

    ran = subprocess.run(["bash", "-c", demo], cwd=clone, env=env, capture_output=True,
                         text=True, timeout=900)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert "all counts accounted for" in ran.stdout

    collect = tests.replace("python -m pytest", "python -m pytest --collect-only -q")
    ran = subprocess.run(["bash", "-c", collect], cwd=clone, env=env, capture_output=True,
                         text=True, timeout=900)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert re.search(r"\d+ tests collected", ran.stdout), ran.stdout[-500:]
