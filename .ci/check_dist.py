"""Check what ``python -m build`` made: an sdist and a wheel that hold the package and what
describes it, and nothing else (no tests, no test data).

Usage: ``python .ci/check_dist.py DIST_DIR``; exits 1 with one line per problem.
"""

from __future__ import annotations

import sys
import tarfile
import zipfile
from pathlib import Path

#: Every file, in either archive, is under these (the sdist's own root aside).
PACKAGE = "impactagent/"
#: What each archive must hold, besides the package's modules.
NEEDED = ("impactagent/py.typed", "impactagent/devtools/schemas/client-metrics.schema.json",
          "impactagent/_version.py")
SDIST_NEEDED = ("LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "MANIFEST.in", "PKG-INFO")
#: No single file this large belongs in a release of this package.
MAX_FILE_BYTES = 200_000


def problems(dist: Path) -> list[str]:
    found = []
    sdists, wheels = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
    if len(sdists) != 1 or len(wheels) != 1:
        return [f"expected one sdist and one wheel in {dist}, found {sdists + wheels}"]
    with tarfile.open(sdists[0]) as sdist:
        members = {m.name.split("/", 1)[1]: m.size for m in sdist.getmembers()
                   if m.isfile() and "/" in m.name}
    found += [f"sdist lacks {name}" for name in (*SDIST_NEEDED, *NEEDED)
              if name not in members]
    found += [f"sdist holds {name}, which is no part of the package"
              for name in members if not (name.startswith((PACKAGE, "impactagent.egg-info/"))
                                          or name in (*SDIST_NEEDED, "setup.cfg"))]
    with zipfile.ZipFile(wheels[0]) as wheel:
        entries = {info.filename: info.file_size for info in wheel.infolist()}
    info = next((n.split("/")[0] for n in entries if n.endswith(".dist-info/METADATA")), "")
    found += [f"wheel lacks {name}" for name in (*NEEDED, f"{info}/licenses/LICENSE")
              if name not in entries]
    found += [f"wheel holds {name}, which is no part of the package" for name in entries
              if not name.startswith((PACKAGE, f"{info}/"))]
    for where, files in (("sdist", members), ("wheel", entries)):
        found += [f"{where}: {name} is {size:,} bytes" for name, size in files.items()
                  if size > MAX_FILE_BYTES]
    return found


if __name__ == "__main__":
    listed = problems(Path(sys.argv[1]))
    for line in listed:
        print(f"check_dist: {line}", file=sys.stderr)
    if not listed:
        print("check_dist: the sdist and the wheel hold the package, its license and its "
              "description, and nothing else")
    sys.exit(1 if listed else 0)
