"""Print pip constraints that pin each runtime dependency at the lower bound pyproject states.

CI installs the package with these constraints and runs the delivery tests, so that every
``>=`` in pyproject.toml is a version that was really tried, not a guess. The constraints are
generated here rather than kept in a file, so they cannot drift from pyproject.

Runtime dependencies are ``project.dependencies`` and the extras an application installs
(``RUNTIME_EXTRAS``); the dev, bench and examples extras are tools for this repository, not
for users, and are left out. Only our direct dependencies are pinned: what they pull in
(urllib3, charset-normalizer, ...) is resolved by pip for the pinned versions.

Each runtime requirement must state exactly one lower bound (``name>=X`` or ``name[extra]>=X``,
an environment marker allowed); anything else fails, because a dependency without a tested
lower bound is what this check exists to prevent.

Usage: ``python .ci/lower_bounds.py [pyproject.toml] > constraints.txt`` (Python 3.11+, for
tomllib); then, in the environment installed with them,
``python .ci/lower_bounds.py --check constraints.txt`` confirms each pin is what is installed
(any Python 3).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

RUNTIME_EXTRAS = ("prometheus", "openfeature")

# name, optional [extras], then the one specifier, then an optional "; marker".
_REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*"
    r">=\s*(?P<version>[A-Za-z0-9.!+_-]+)\s*(?:;.*)?$"
)


def lower_bound(requirement: str) -> tuple[str, str]:
    """The name and lower bound of one requirement.

    >>> lower_bound("tenacity>=8.3")
    ('tenacity', '8.3')
    >>> lower_bound("requests[socks] >= 2.28 ; python_version >= '3.10'")
    ('requests', '2.28')
    >>> lower_bound("ulid-py")
    Traceback (most recent call last):
    ...
    ValueError: 'ulid-py' has no single '>=' lower bound
    """
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise ValueError(f"{requirement!r} has no single '>=' lower bound")
    return match["name"], match["version"]


def constraints(pyproject: dict) -> list[str]:
    """``name==lower`` for every runtime requirement, in pyproject's order, each name once."""
    project = pyproject["project"]
    requirements = list(project.get("dependencies", []))
    extras = project.get("optional-dependencies", {})
    for extra in RUNTIME_EXTRAS:
        if extra not in extras:
            raise ValueError(f"pyproject has no [{extra}] extra (see RUNTIME_EXTRAS)")
        requirements += extras[extra]
    pins: dict[str, str] = {}
    for requirement in requirements:
        name, version = lower_bound(requirement)
        key = re.sub(r"[-_.]+", "-", name).lower()
        if pins.setdefault(key, version) != version:
            raise ValueError(f"{name} has two lower bounds: {pins[key]} and {version}")
    return [f"{name}=={version}" for name, version in pins.items()]


def _release(version: str) -> tuple[int, ...]:
    """A plain release number without trailing zeros: ``4.18`` and ``4.18.0`` compare equal.

    >>> _release("4.18.0") == _release("4.18")
    True
    """
    parts = [int(part) for part in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def check(constraints_path: Path) -> list[str]:
    """What differs between the pins and the installed distributions (empty: all as pinned)."""
    from importlib.metadata import PackageNotFoundError, version

    problems = []
    for line in constraints_path.read_text(encoding="utf-8").split():
        name, pinned = line.split("==")
        try:
            installed = version(name)
        except PackageNotFoundError:
            problems.append(f"{name} is not installed")
            continue
        print(f"  {name} {installed}")
        if _release(installed) != _release(pinned):
            problems.append(f"{name} {installed} is installed, not the lower bound {pinned}")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--check":
        problems = check(Path(argv[2]))
        for problem in problems:
            print(f"lower_bounds: {problem}", file=sys.stderr)
        return 1 if problems else 0
    import tomllib  # only here: --check runs on the oldest Python, which has no tomllib

    path = Path(argv[1] if len(argv) > 1 else "pyproject.toml")
    try:
        lines = constraints(tomllib.loads(path.read_text(encoding="utf-8")))
    except ValueError as error:
        print(f"lower_bounds: {error}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
