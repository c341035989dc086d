"""Print the Python versions the package says it supports, one ``3.X`` a line, oldest first.

They are read from pyproject.toml's ``Programming Language :: Python :: 3.X`` classifiers, the
one list CI tests (.ci/matrix runs the suite on each), and checked against
``requires-python``: its ``>=3.X`` floor must be the oldest classifier, so that what pip lets
users install on is exactly what CI runs.

Usage: ``python .ci/pythons.py [pyproject.toml]`` (Python 3.11+, for tomllib).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

_CLASSIFIER = re.compile(r"^Programming Language :: Python :: (3\.\d+)$")
_FLOOR = re.compile(r"^\s*>=\s*(3\.\d+)\s*$")


def supported(project: dict) -> list[str]:
    """The ``3.X`` classifiers, oldest first, after checking them against requires-python.

    >>> supported({"requires-python": ">=3.10", "classifiers": [
    ...     "Programming Language :: Python :: 3.11",
    ...     "Programming Language :: Python :: 3.10"]})
    ['3.10', '3.11']
    >>> supported({"requires-python": ">=3.9", "classifiers": [
    ...     "Programming Language :: Python :: 3.10"]})
    Traceback (most recent call last):
    ...
    ValueError: requires-python '>=3.9' allows 3.9, but the oldest classifier is 3.10
    """
    versions = sorted(
        {m[1] for c in project.get("classifiers", []) if (m := _CLASSIFIER.match(c))},
        key=lambda v: tuple(int(part) for part in v.split(".")),
    )
    if not versions:
        raise ValueError("no 'Programming Language :: Python :: 3.X' classifiers")
    requires = project.get("requires-python", "")
    floor = _FLOOR.match(requires)
    if floor is None:
        raise ValueError(f"requires-python {requires!r} is not of the form '>=3.X'")
    if floor[1] != versions[0]:
        raise ValueError(f"requires-python {requires!r} allows {floor[1]}, but the oldest "
                         f"classifier is {versions[0]}")
    return versions


def main(argv: list[str]) -> int:
    import tomllib  # 3.11+: imported here, as the package's oldest Python has none

    path = Path(argv[1] if len(argv) > 1 else "pyproject.toml")
    try:
        versions = supported(tomllib.loads(path.read_text(encoding="utf-8"))["project"])
    except ValueError as error:
        print(f"pythons: {error}", file=sys.stderr)
        return 1
    print("\n".join(versions))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
