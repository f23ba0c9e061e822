"""The package's shape: no module imports one that imports it back.

Every module under ``src/weightwise`` is parsed with ``ast``; each import of a
weightwise module is an edge, wherever it stands (at the top, or inside a function,
where a lazy import hides a circle from the interpreter but not from a reader).
Imports under ``if TYPE_CHECKING:`` never run and are not counted. A circle is a
strongly connected group of two or more modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "weightwise"

# Imports that still close a circle, each the lazy one of its circle; the test ignores these
# edges. Delete an entry as soon as its circle is gone.
KNOWN_BACK_EDGES = {
    # Model.save calls saving, and loading a .keras or .h5 file looks Model up in models.model ...
    ("weightwise.saving.model_build", "weightwise.models.model"),
    # ... and reads weightwise.__version__ from the package, which imports saving.
    ("weightwise.saving.keras_file", "weightwise"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        pending.extend(ast.iter_child_nodes(node))
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The weightwise modules that ``name`` imports, at any depth of its code."""

    def known(target: str) -> str | None:
        # ``import weightwise.a.b.c`` where ``c`` is a name in ``a.b``: the longest module prefix.
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # ``from pkg import sub`` imports the submodule; ``from mod import name`` the module.
            candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        for candidate in candidates:
            if candidate == "weightwise" or candidate.startswith("weightwise."):
                target = known(candidate)
                if target is not None and target != name:
                    targets.add(target)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected groups of two or more modules (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(group)
    return groups


def test_the_graph_sees_the_package() -> None:
    graph = _graph()
    assert {"weightwise", "weightwise.binding", "weightwise.engine", "weightwise.callbacks.callback_list",
            "weightwise.optimizers.base_optimizer"} <= set(graph)
    assert "weightwise.binding" in graph["weightwise.engine"]


def test_no_module_imports_one_that_imports_it_back() -> None:
    graph = {name: {t for t in targets if (name, t) not in KNOWN_BACK_EDGES} for name, targets in _graph().items()}
    assert [sorted(group) for group in _circles(graph)] == []


def test_the_binding_seam_never_imports_its_fast_path() -> None:
    graph = _graph()
    assert "weightwise.engine" not in graph["weightwise.binding"]


def test_integrations_sit_on_top() -> None:
    """Nothing in weightwise imports an integration, so ``import weightwise`` never needs a framework's extra."""
    graph = _graph()
    integrations = {name for name in graph if name.startswith("weightwise.integrations")}
    assert "weightwise.integrations.lightning" in integrations
    users = sorted(name for name, targets in graph.items() if targets & integrations and name not in integrations)
    assert users == []
    # The package itself imports nothing, so ``import weightwise.integrations`` needs no framework.
    assert _import_nodes(ast.parse((PACKAGE / "integrations" / "__init__.py").read_text())) == []


def test_distribution_sits_below_models() -> None:
    # keras.distribution is read by fit (models), so it may use only the bottom of the package.
    allowed = {"weightwise.arguments", "weightwise.backend", "weightwise.config", "weightwise.ops"}
    graph = _graph()
    package = [name for name in graph if name == "weightwise.distribution" or name.startswith("weightwise.distribution.")]
    assert len(package) >= 4
    outside = {name: sorted(t for t in graph[name] if not t.startswith("weightwise.distribution") and t not in allowed)
               for name in package}
    assert outside == {name: [] for name in package}


def test_circle_finder_finds_circles_including_lazy_imports(tmp_path: Path) -> None:
    package = tmp_path / "weightwise"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from weightwise import b\n")
    (package / "b.py").write_text("def f():\n    from weightwise.c import thing\n")
    (package / "c.py").write_text("import weightwise.a\n")
    (package / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from weightwise import a\n")
    modules = {_name: path for _name, path in
               ((".".join(p.relative_to(tmp_path).with_suffix("").parts), p) for p in package.glob("*.py"))}
    modules["weightwise"] = modules.pop("weightwise.__init__")
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert graph["weightwise.d"] == set()
    assert _circles(graph) == [{"weightwise.a", "weightwise.b", "weightwise.c"}]
