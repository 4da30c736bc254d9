"""Dependencies point one way: no two modules of nni_offpolicy/ or search_spaces/ import each other (issue 28).

Read from the source with ``ast``: every import statement counts, at module level or inside a function, except
those under ``if TYPE_CHECKING:`` (annotations only; they never run).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nni_offpolicy", "search_spaces")


def module_files() -> dict[str, Path]:
    """Every module of the packages, by dotted name (a package by its own name, for its __init__.py)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(tree: ast.AST):
    """Every import statement that can run: everywhere but the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.If) and _type_checking_only(node):
            children = node.orelse  # the else branch runs
        stack.extend(children)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``name`` imports (``from package import submodule`` names the submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _statements(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        found.update(t for t in targets if t in modules and t != name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_the_graph_sees_imports_inside_functions_and_skips_type_checking_blocks():
    graph = import_graph()
    assert "nni_offpolicy.search.loop" in graph["nni_offpolicy.commands.search"]  # a function-level import
    assert "search_spaces.ops" in graph["search_spaces.nb201"]  # a relative import
    assert "nni_offpolicy.search.supernet" not in graph["nni_offpolicy.search.learners"]  # TYPE_CHECKING only


def test_no_two_modules_import_each_other():
    graph = import_graph()
    circles = sorted(f"{a} <-> {b}" for a, targets in graph.items() for b in targets
                     if a < b and a in graph.get(b, ()))
    assert not circles, "modules importing each other:\n" + "\n".join(circles)


# Packages split by job (issue 28): each listed module may import only the listed modules before it.
LAYERS = {
    "nni_offpolicy.tools.ablate": ["variants", "plan", "judging", "retrains", "report", "grid"],
    "nni_offpolicy.data": ["imageset", "split", "archive", "datasets", "batches"],  # images; tables stand apart
}


def test_split_packages_import_downwards_only():
    graph = import_graph()
    for package, order in LAYERS.items():
        modules = {f"{package}.{m}" for m in order}
        assert modules <= set(graph), f"{package}: LAYERS names a module that is not there"
        upward = sorted(f"{a} -> {b}" for a in modules for b in graph[a] & modules
                        if order.index(b.rpartition(".")[2]) >= order.index(a.rpartition(".")[2]))
        assert not upward, f"{package}: modules importing their own layer or one above:\n" + "\n".join(upward)
