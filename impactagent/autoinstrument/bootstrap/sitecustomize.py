"""The bootstrap ``impactagent run`` puts first on ``PYTHONPATH``: one finder on
``sys.meta_path`` hands each watched library, once imported, to
:mod:`impactagent.autoinstrument.instrumentations`. A process that imports none of them never
imports impactagent. A ``sitecustomize`` further on the path still runs.
"""

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # for the type checker only: nothing more is imported at start-up
    from collections.abc import Sequence
    from importlib.abc import Loader
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))


class _Loader:
    """The library's own loader, and a call to the instrumentation once it has run."""

    def __init__(self, loader: "Loader", name: str) -> None:
        self.loader, self.name = loader, name

    def create_module(self, spec: "ModuleSpec") -> "ModuleType | None":
        return self.loader.create_module(spec)

    def exec_module(self, module: "ModuleType") -> None:
        self.loader.exec_module(module)
        module.__loader__ = self.loader
        spec = getattr(module, "__spec__", None)
        if spec is not None:
            spec.loader = self.loader
        _loaded(self.name, module)

    def __getattr__(self, name: str) -> "Any":
        return getattr(self.loader, name)


class _Finder:
    """Finds nothing itself: for a watched name, wraps the loader that the next finder gives."""

    def __init__(self) -> None:
        self.watched: set[str] = set()

    def find_spec(self, name: str, path: "Sequence[str] | None" = None,
                  target: "ModuleType | None" = None) -> "ModuleSpec | None":
        if name not in self.watched:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec: ModuleSpec | None = find(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    # A stand-in, not an importlib.abc.Loader: importing that slows start-up.
                    spec.loader = _Loader(spec.loader, name)  # type: ignore[assignment]
                return spec
        return None


def _loaded(name: str, module: "ModuleType") -> None:
    _finder.watched.discard(name)
    try:
        from impactagent.autoinstrument.instrumentations import instrument
    except Exception as error:  # e.g. a command run by an interpreter without impactagent
        sys.stderr.write(f"impactagent: cannot instrument {name} ({error!r}); the app runs "
                         "without instrumentation\n")
        _finder.watched.clear()  # said once: nothing else will be instrumented either
    else:
        instrument(name, module)
    if not _finder.watched and _finder in sys.meta_path:
        sys.meta_path.remove(_finder)


def _chain() -> None:
    """Run the next ``sitecustomize`` on the path, which this one shadows."""
    ours = sys.modules.pop("sitecustomize")
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != _HERE]
    try:
        import sitecustomize  # type: ignore[import-not-found]  # noqa: F401
    except ImportError as error:
        if error.name != "sitecustomize":
            raise
    finally:
        sys.modules.setdefault("sitecustomize", ours)


# Only as the interpreter's own sitecustomize, with this folder on PYTHONPATH (the way
# ``impactagent run`` starts a command): imported any other way, it does nothing.
_finder = _Finder()
if __name__ == "sitecustomize" and _HERE in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    _finder.watched.update(("flask", "django", "starlette.applications", "fastapi.applications",
                            "celery.signals", "gunicorn.app.base", "UnleashClient"))
    for _name in list(_finder.watched):
        if _name in sys.modules:  # imported before site ran (not by a normal start-up)
            _loaded(_name, sys.modules[_name])
    if _finder.watched:
        sys.meta_path.insert(0, _finder)
    _chain()
