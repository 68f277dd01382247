"""The packages' import graph (issue 22): no import circle, every import points down the layers, no file past 400 lines.

The graph is read from the source with `ast`, never by importing: module-level and function-level
imports alike (a lazy import still makes a circle), except those under `if TYPE_CHECKING:`, which
never run. Relative imports are resolved; `from pkg import name` is an edge to the submodule
`pkg.name` when there is one, else to `pkg` itself. The parent packages an import runs first (a
package's own `__init__`) are not edges: a package whose `__init__` re-exports its modules would
otherwise be a circle with each of them.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ROOTS = ("igla_jax", "accelerators", "coord_check", "experiments")
MAX_LINES = 400
SOURCE_SUFFIXES = (".py", ".sh")
# Lowest first. A module may import its own package and the packages of lower ranks, never a sibling
# of its rank or anything above it. `igla_jax` is the package's own __init__ and the old-path finder.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("igla_jax.evidence", "igla_jax.training"),
    ("igla_jax.search",),
    ("igla_jax.curves",),
    ("igla_jax.execution",),
    ("igla_jax",),
    ("accelerators",),
    ("coord_check",),
    ("experiments.harness",),
    ("experiments.studies", "experiments.witness"),
    ("experiments",),
)
# Never imported by the repository's own code, whatever the layers say (named in the failure).
FORBIDDEN = {"igla_jax": ("accelerators", "experiments", "coord_check"),
             "accelerators": ("experiments", "coord_check"),
             "coord_check": ("experiments",)}


def module_files(root: Path, roots: tuple[str, ...] = ROOTS) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under the roots (a package is its __init__)."""
    out = {}
    for top in roots:
        for f in sorted((root / top).rglob("*.py")):
            if "__pycache__" in f.parts:
                continue
            parts = f.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """The repository modules `name` imports (anywhere in it but under `if TYPE_CHECKING:`) -> first line."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, int] = {}

    def add(dotted: str, line: int) -> None:
        parts = dotted.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        target = ".".join(parts)
        if parts and target != name:
            found.setdefault(target, line)

    def visit(stmt: ast.AST) -> None:
        if isinstance(stmt, ast.If) and _type_checking(stmt.test):
            for other in stmt.orelse:   # only the else branch ever runs
                visit(other)
            return
        if isinstance(stmt, ast.Import):
            for a in stmt.names:
                add(a.name, stmt.lineno)
        elif isinstance(stmt, ast.ImportFrom):
            if stmt.level:
                base = package.split(".")[:len(package.split(".")) - (stmt.level - 1)]
                source = ".".join(base + ([stmt.module] if stmt.module else []))
            else:
                source = stmt.module or ""
            for a in stmt.names:
                sub = f"{source}.{a.name}"
                add(sub if sub in modules else source, stmt.lineno)
        for child in ast.iter_child_nodes(stmt):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return found


def import_graph(root: Path, roots: tuple[str, ...] = ROOTS) -> dict[str, dict[str, int]]:
    modules = module_files(root, roots)
    return {m: imports_of(m, f, modules) for m, f in modules.items()}


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One circle (a path back to its start) per strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:   # Tarjan (the graph is ~150 modules: recursion is fine)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(comp)

    for v in sorted(graph):
        if v not in index:
            connect(v)
    out = []
    for comp in components:   # breadth first inside the component: the shortest way back to its first module
        start = min(comp)
        came_from: dict[str, str | None] = {start: None}
        queue, last = [start], None
        while queue and last is None:
            v = queue.pop(0)
            for w in sorted(graph[v]):
                if w == start:
                    last = v
                    break
                if w in comp and w not in came_from:
                    came_from[w] = v
                    queue.append(w)
        path = []
        while last is not None:
            path.append(last)
            last = came_from[last]
        out.append(path[::-1] + [start])
    return sorted(out)


def describe(path: list[str], graph: dict[str, dict[str, int]]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(path, path[1:])) + f" -> {path[-1]}"


def layer_of(module: str) -> tuple[int, str] | None:
    """(rank, package) of the longest layer package holding `module`."""
    best = None
    for rank, packages in enumerate(LAYERS):
        for p in packages:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > len(best[1])):
                best = (rank, p)
    return best


def layer_violations(graph: dict[str, dict[str, int]]) -> list[str]:
    bad = []
    for m, deps in sorted(graph.items()):
        if m.rpartition(".")[2] == "__main__":
            continue   # an entry point: run by `python -m`, never imported, may call anything
        here = layer_of(m)
        for d, line in sorted(deps.items()):
            there = layer_of(d)
            if here is None or there is None or here[1] == there[1]:
                continue
            if there[0] >= here[0]:
                bad.append(f"{m} (line {line}) imports {d}: {there[1]} is not below {here[1]}")
    return bad


def forbidden_imports(graph: dict[str, dict[str, int]]) -> list[str]:
    return [f"{m} (line {line}) imports {d}: {m.split('.')[0]} never imports {d.split('.')[0]}"
            for m, deps in sorted(graph.items()) for d, line in sorted(deps.items())
            if d.split(".")[0] in FORBIDDEN.get(m.split(".")[0], ())]


def long_files(root: Path, roots: tuple[str, ...] = ROOTS, limit: int = MAX_LINES) -> list[str]:
    out = []
    for top in roots:
        for f in sorted((root / top).rglob("*")):
            if f.suffix in SOURCE_SUFFIXES and "__pycache__" not in f.parts:
                n = len(f.read_text(encoding="utf-8").splitlines())
                if n > limit:
                    out.append(f"{f.relative_to(root)}: {n} lines (at most {limit}: split it along a seam)")
    return out


# ---------------------------------------------------------------- the repository
@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, int]]:
    return import_graph(REPO)


def test_no_import_circle(graph):
    found = cycles(graph)
    assert not found, "import circles:\n" + "\n".join(describe(c, graph) for c in found)


def test_igla_jax_and_accelerators_never_import_upward(graph):
    bad = forbidden_imports(graph)
    assert not bad, "\n".join(bad)


def test_imports_point_down_the_layers(graph):
    bad = layer_violations(graph)
    assert not bad, "\n".join(bad)


def test_every_package_module_is_in_a_layer(graph):
    assert [m for m in graph if layer_of(m) is None] == []


def test_no_source_file_over_400_lines():
    bad = long_files(REPO)
    assert not bad, "\n".join(bad)


# ---------------------------------------------------------------- the checks themselves, on made-up trees
def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return tmp_path


def test_falsify_a_function_level_circle_is_found_and_named(tmp_path):
    root = _tree(tmp_path, {"igla_jax/__init__.py": "",
                            "igla_jax/a.py": "from igla_jax.b import f\n",
                            "igla_jax/b.py": "def f():\n    from igla_jax import a\n    return a\n"})
    g = import_graph(root, ("igla_jax",))
    assert cycles(g) == [["igla_jax.a", "igla_jax.b", "igla_jax.a"]]
    assert describe(cycles(g)[0], g) == "igla_jax.a (line 1) -> igla_jax.b (line 2) -> igla_jax.a"
    # the same modules without the lazy import: no circle
    (root / "igla_jax/b.py").write_text("def f():\n    return 1\n")
    assert cycles(import_graph(root, ("igla_jax",))) == []


def test_falsify_type_checking_imports_and_a_package_reexporting_its_modules_are_no_circle(tmp_path):
    root = _tree(tmp_path, {"igla_jax/__init__.py": "",
                            "igla_jax/pkg/__init__.py": "from igla_jax.pkg.a import A\nfrom igla_jax.pkg import b\n",
                            "igla_jax/pkg/a.py": "from typing import TYPE_CHECKING\nfrom igla_jax.pkg.b import B\n"
                                                 "if TYPE_CHECKING:\n    from igla_jax.pkg import c\nA = B\n",
                            "igla_jax/pkg/b.py": "B = 1\n",
                            "igla_jax/pkg/c.py": "from . import a\n"})
    g = import_graph(root, ("igla_jax",))
    assert g["igla_jax.pkg.a"] == {"igla_jax.pkg.b": 2}             # not c: under TYPE_CHECKING
    assert g["igla_jax.pkg.c"] == {"igla_jax.pkg.a": 1}             # the relative import, resolved
    assert g["igla_jax.pkg"] == {"igla_jax.pkg.a": 1, "igla_jax.pkg.b": 2}
    assert cycles(g) == []
    # an `else:` beside TYPE_CHECKING runs, so it counts: c -> a -> c
    (root / "igla_jax/pkg/a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    pass\n"
                                            "else:\n    from igla_jax.pkg import c\n")
    assert cycles(import_graph(root, ("igla_jax",))) == [["igla_jax.pkg.a", "igla_jax.pkg.c", "igla_jax.pkg.a"]]


def test_falsify_an_upward_import_is_refused():
    g = {"igla_jax.search.race": {"igla_jax.execution.rows": 3, "igla_jax.evidence.verdict": 4},
         "igla_jax.evidence.verdict": {"igla_jax.training.data": 9},
         "accelerators.ucb": {"experiments.harness.judge": 5, "igla_jax.search.race": 6},
         "experiments.harness.__main__": {"experiments.hypothesis": 3}}
    assert layer_violations(g) == [
        "accelerators.ucb (line 5) imports experiments.harness.judge: experiments.harness is not below accelerators",
        "igla_jax.evidence.verdict (line 9) imports igla_jax.training.data: igla_jax.training is not below "
        "igla_jax.evidence",
        "igla_jax.search.race (line 3) imports igla_jax.execution.rows: igla_jax.execution is not below "
        "igla_jax.search"]
    assert forbidden_imports(g) == [
        "accelerators.ucb (line 5) imports experiments.harness.judge: accelerators never imports experiments"]
    assert layer_violations({"igla_jax.search.race": {"igla_jax.search.race_types": 1}}) == []


def test_falsify_a_long_file_is_named(tmp_path):
    root = _tree(tmp_path, {"igla_jax/long.py": "x = 1\n" * 401, "igla_jax/ok.py": "x = 1\n" * 400,
                            "igla_jax/data.txt": "x\n" * 1000})
    assert long_files(root, ("igla_jax",)) == [
        "igla_jax/long.py: 401 lines (at most 400: split it along a seam)"]
