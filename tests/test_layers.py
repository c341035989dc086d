"""The package's layers, as drawn in docs/architecture.md, held by reading every import.

Each module belongs to one layer, by its folder; a module may import from its own layer and
the layers below it, never from a layer above. ``impactagent/__init__.py`` (the names the
README uses) and ``_version`` stand apart: the facade may import any layer it re-exports,
and anyone may read the version. The recording core never imports what does I/O, so that
recording cannot block on the network or the disk.

A second rule keeps the seams public: no module reads another module's private attribute
(``thing._name`` where ``_name`` is not defined in the module that reads it), tests included.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "impactagent"

#: Lowest first. A module's layer is the first prefix that matches its dotted name.
LAYERS: List[Tuple[str, Tuple[str, ...]]] = [
    ("core", ("impactagent.core",)),
    ("server_rules", ("impactagent.server_rules",)),
    ("delivery", ("impactagent.delivery",)),
    ("prometheus", ("impactagent.prometheus",)),
    ("agent", ("impactagent.agent", "impactagent.agent_statistics")),
    ("integrations", ("impactagent.integrations",)),
    ("devtools", ("impactagent.devtools",)),
    ("admin", ("impactagent.admin",)),
    ("autoinstrument", ("impactagent.autoinstrument",)),
    ("cli", ("impactagent.cli", "impactagent.__main__")),
]
ANYONE_MAY_IMPORT = {"impactagent._version"}
FACADE = "impactagent"
#: (layer, group): the layer's modules import nothing of the group, though the order above
#: may allow it; a module inside the group itself is exempt.
NOT_IN: List[Tuple[str, Tuple[str, ...]]] = [
    # The core runs on the app's hot path and never waits on I/O.
    ("impactagent.core", ("requests", "urllib3", "tenacity", "socket", "http",
                          "urllib.request", "impactagent.delivery")),
    # Push and pull are two rooms: delivery sends deltas to Unleash and knows nothing of
    # Prometheus; a scrape reads the core's running totals, never the push side.
    ("impactagent.delivery", ("impactagent.prometheus", "prometheus_client")),
    ("impactagent.prometheus", ("impactagent.delivery",)),
]
def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def inside(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def layer_of(module: str) -> Optional[int]:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(inside(module, p) for p in prefixes):
            return rank
    return None


def modules() -> Dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: Set[str]) -> Iterator[Tuple[int, str]]:
    """(line, imported module) for every import in ``path``, relative ones resolved; for
    ``from package import name`` the module ``package.name`` when that is a module."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                yield node.lineno, candidate if candidate in known else source
        elif (isinstance(node, ast.Call) and _called(node) in ("import_module", "__import__")
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            # importlib.import_module("impactagent.x"), __import__(...): an import all the same
            yield node.lineno, node.args[0].value


def _called(call: ast.Call) -> str:
    """The name a call calls: ``f`` for ``f(...)`` and ``m.f(...)``."""
    func = call.func
    return func.id if isinstance(func, ast.Name) else (
        func.attr if isinstance(func, ast.Attribute) else "")


def test_every_module_has_a_layer():
    unplaced = [m for m in modules() if layer_of(m) is None
                and m not in ANYONE_MAY_IMPORT | {FACADE}]
    assert not unplaced, f"modules outside every layer (see docs/architecture.md): {unplaced}"


def test_no_import_runs_against_the_layers():
    known = set(modules())
    wrong = []
    for name, path in modules().items():
        rank = layer_of(name)
        if rank is None:
            continue  # the facade and the version: see the module docstring
        for line, target in imports_of(path, known):
            if not (target == FACADE or target.startswith(FACADE + ".")):
                continue
            if target == FACADE:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports the package facade")
                continue
            if target in ANYONE_MAY_IMPORT:
                continue
            target_rank = layer_of(target)
            if target_rank is not None and target_rank > rank:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({LAYERS[rank][0]}) imports "
                             f"{target} ({LAYERS[target_rank][0]}, a layer above)")
    assert not wrong, "\n".join(wrong)


def test_no_layer_imports_what_it_must_not():
    known = set(modules())
    wrong = [f"{path.relative_to(ROOT)}:{line} ({layer}) imports {target}"
             for name, path in modules().items()
             for layer, group in NOT_IN
             if inside(name, layer) and not any(inside(name, g) for g in group)
             for line, target in imports_of(path, known)
             if any(inside(target, g) for g in group)]
    assert not wrong, "\n".join(wrong)


def test_the_rules_name_modules_that_exist():
    # A rule about a module that moved would hold for nothing: move the rule with it.
    known = set(modules())
    named = [m for layer, group in NOT_IN for m in (layer, *group) if inside(m, FACADE)]
    gone = [m for m in named if not any(inside(k, m) for k in known)]
    assert not gone, f"tests/test_layers.py names modules that do not exist: {gone}"


def circles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One path back to itself for each module that some chain of imports leads back to."""
    found = []
    for start in sorted(graph):
        trail, todo = {start: [start]}, [start]
        while todo:
            name = todo.pop()
            if start in graph.get(name, ()):
                found.append(trail[name] + [start])
                break
            for target in sorted(graph.get(name, ())):
                if target not in trail:
                    trail[target] = trail[name] + [target]
                    todo.append(target)
    return found


def test_no_import_circle():
    # TYPE_CHECKING imports too: a circle there is still two modules that know each other.
    known = set(modules())
    graph = {name: {target for _, target in imports_of(path, known) if target != name}
             for name, path in modules().items()}
    found = circles(graph)
    assert not found, "import circles:\n" + "\n".join(" -> ".join(c) for c in found)


def test_the_circle_check_sees_one():
    graph = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set()}
    assert circles(graph) == [["a", "b", "c", "a"], ["b", "c", "a", "b"],
                              ["c", "a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("room, line, test", [
    ("core", "from ..delivery.transport import Transport",
     test_no_import_runs_against_the_layers),
    ("delivery", "from ..prometheus.collector import AgentCollector",
     test_no_import_runs_against_the_layers),
    ("delivery", "import prometheus_client", test_no_layer_imports_what_it_must_not),
    ("delivery", "from ..prometheus import workers", test_no_layer_imports_what_it_must_not),
    ("prometheus", "from ..delivery import settings", test_no_layer_imports_what_it_must_not),
    # The core records; the server's rules and the imitation of a server sit above it.
    ("core", "from ..server_rules.validation import check_own_body",
     test_no_import_runs_against_the_layers),
    ("core", "from ..server_rules import jsvalues", test_no_import_runs_against_the_layers),
    ("core", "import impactagent.devtools.received", test_no_import_runs_against_the_layers),
    ("server_rules", "from ..delivery.spool import Spool", test_no_import_runs_against_the_layers),
    ("server_rules", "from ..devtools.receiver import Receiver",
     test_no_import_runs_against_the_layers),
])
def test_the_layer_test_sees_a_wrong_import(room, line, test):
    # The checker itself, on a planted module in the room.
    planted = PACKAGE / room / "_planted_for_the_layer_test.py"
    planted.write_text(line + "\n")
    try:
        with pytest.raises(AssertionError, match=r"_planted_for_the_layer_test\.py:1"):
            test()
    finally:
        planted.unlink()


# -- no private reach-ins ------------------------------------------------------------------

#: Private names of other libraries that the code uses on purpose, each for a stated reason.
FOREIGN_PRIVATE = {
    "_exit",             # os._exit: how a forked child or a killed process ends, by design
    "_replace",          # NamedTuple._replace: public API despite the underscore
    "_asdict",           # NamedTuple._asdict: likewise
    "_run_exitfuncs",    # atexit: the model test runs exactly what a normal exit runs
    "_is_gil_enabled",   # sys: how CPython 3.13+ says a free-threaded build runs without GIL
}


def defined_private_names(tree: ast.AST) -> Set[str]:
    """Private names a module defines: functions, classes, attributes it assigns."""
    names: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return {n for n in names if n.startswith("_")}


def inherited(value: ast.expr) -> bool:
    """``self._x``, ``cls._x``, ``super()._x``: the object's own members, inherited or not."""
    return (isinstance(value, ast.Name) and value.id in ("self", "cls")) or (
        isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
        and value.func.id == "super")


def reached_privately(value: ast.expr, own: Set[str]) -> bool:
    """Whether the object whose private attribute is read can be the module's own.

    A plain name (``self``, ``other`` in ``__eq__``, a class of the module, a parameter
    that holds one of its objects) or a chain of the module's own private names from one
    (``self._middleware``) can. A chain through a public name cannot be told from another
    module's object (``agent.lifecycle.delivery._lock``): the private name is the module's
    own only by spelling, so the read is reported."""
    while isinstance(value, ast.Attribute):
        if value.attr not in own:
            return False
        value = value.value
    return isinstance(value, ast.Name) or inherited(value)


def _private_string(node: ast.expr, own: Set[str]) -> bool:
    """A string constant naming a private attribute that is not the module's own."""
    return (isinstance(node, ast.Constant) and isinstance(node.value, str)
            and node.value.startswith("_") and not node.value.startswith("__")
            and node.value not in own)


def _private_by_string(node: ast.AST, own: Set[str]) -> bool:
    """``getattr(x, "_name")``, ``hasattr(...)``, ``vars(x)["_name"]``, ``x.__dict__[...]``."""
    if isinstance(node, ast.Call) and _called(node) in ("getattr", "hasattr"):
        return (len(node.args) >= 2 and _private_string(node.args[1], own)
                and not inherited(node.args[0]))
    return (isinstance(node, ast.Subscript) and _private_string(node.slice, own)
            and _is_attribute_dict(node.value))


def _is_attribute_dict(node: ast.expr) -> bool:
    """``vars(x)`` or ``x.__dict__``: an object's attributes as a mapping."""
    return ((isinstance(node, ast.Call) and _called(node) == "vars")
            or (isinstance(node, ast.Attribute) and node.attr == "__dict__"))


def private_reach_ins(path: Path, root: Path = ROOT) -> List[str]:
    tree = ast.parse(path.read_text())
    own = defined_private_names(tree) | FOREIGN_PRIVATE
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            attr = node.attr
            if not attr.startswith("_") or attr.startswith("__"):
                continue
            if inherited(node.value):
                continue  # a class's own protected members, wherever its bases are written
            if attr in FOREIGN_PRIVATE or (attr in own and reached_privately(node.value, own)):
                continue  # the module's own object, reached through its own names
            found.append(f"{path.relative_to(root)}:{node.lineno} reads {ast.unparse(node)}")
        elif _private_by_string(node, own):
            found.append(f"{path.relative_to(root)}:{node.lineno} reads {ast.unparse(node)}")
        elif (isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                ("impactagent", "tests", "benchmarks"))) or (
                isinstance(node, ast.ImportFrom) and node.level):
            for alias in node.names:
                # A private name belongs to its module: importing it is reaching in.
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(root)}:{node.lineno} imports private "
                                 f"{alias.name} from {node.module}")
    return found


def checked_files() -> List[Path]:
    return [p for folder in ("impactagent", "tests", "benchmarks", "examples")
            for p in sorted((ROOT / folder).rglob("*.py")) if "node_modules" not in p.parts]


def test_no_module_reads_another_modules_private_attributes():
    found = [line for path in checked_files() for line in private_reach_ins(path)]
    assert not found, ("private attributes read across modules (give the seam a public "
                       "name):\n" + "\n".join(found))


def test_the_reach_in_check_sees_one(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("class A:\n    def __init__(self):\n        self._mine = 1\n\n"
                       "def f(agent, a):\n    return agent._recorder, a._mine\n")
    assert private_reach_ins(planted, tmp_path) == ["planted.py:6 reads agent._recorder"]


def test_the_picture_in_docs_architecture_matches_the_folders_and_the_rule():
    text = (ROOT / "docs" / "architecture.md").read_text()
    picture = text.split("```")[1]
    drawn = [line.split()[0] for line in picture.splitlines()
             if line.startswith("  ") and line.split()[0].endswith(("/", ".py"))]
    layers_in_order = [entry for entry in drawn if entry != "__init__.py"]
    expected = [prefixes[0].removeprefix("impactagent.") + ("/" if (PACKAGE / prefixes[0]
                .removeprefix("impactagent.")).is_dir() else ".py")
                for _, prefixes in LAYERS]
    assert layers_in_order == expected, "the picture's order is not the layer test's"
    folders = sorted(p.name + "/" for p in PACKAGE.iterdir()
                     if p.is_dir() and (p / "__init__.py").exists())
    assert sorted(e for e in drawn if e.endswith("/")) == folders


def test_the_layout_page_names_every_module():
    layout = (ROOT / "docs" / "layout.md").read_text()
    missing = [str(p.relative_to(ROOT)) for p in sorted(PACKAGE.rglob("*.py"))
               if p.name not in ("__init__.py", "__main__.py", "_version.py")
               and f"`{p.name}`" not in layout]
    assert not missing, f"docs/layout.md does not name: {missing}"
