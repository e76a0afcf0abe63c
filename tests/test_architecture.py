"""The package's architecture, checked: the layers as folders, no import cycles (imports inside
functions counted), the import-linter contracts of pyproject.toml, short modules, a small
public face. docs/how-it-works.md draws the layers these tests hold."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import compile_policy

PACKAGE = Path(compile_policy.__file__).parent
ROOT = PACKAGE.parent.parent  # the checkout: pyproject.toml holds the contracts

#: What users import (the docs name nothing else); everything else is private by name.
PUBLIC = {"compile_policy", "compile_policy.__main__", "compile_policy.distributed",
          "compile_policy.lightning", "compile_policy.pytest_plugin"}
#: The layers, bottom up, as pyproject.toml's layers contract lists them (top down).
LAYERS = ("_base", "_policy", "_context", "_compiled", "_governance", "pytest_plugin")


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _is_type_checking(test: ast.expr) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def _imports(name: str, path: Path) -> Iterator[tuple[str, bool]]:
    """Every import of ``name``'s source as (absolute target, runs at import), those inside
    functions and ``if TYPE_CHECKING:`` blocks (which never run) included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST, top: bool) -> Iterator[tuple[str, bool]]:
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                inner = False
            if isinstance(child, ast.Import):
                yield from ((alias.name, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                yield base, top
                for alias in child.names:  # `from . import stack`: the submodule itself
                    yield f"{base}.{alias.name}", top
            yield from visit(child, inner)

    yield from visit(ast.parse(path.read_text(), str(path)), True)


def _graph() -> dict[str, set[str]]:
    known = dict(_modules())
    return {
        name: {target for target, _top in _imports(name, path) if target in known and target != name}
        for name, path in known.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph[target]))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_no_import_cycles_with_the_imports_inside_functions_counted() -> None:
    # Type-only imports count too: a cycle there is one a refactoring can wake. The package's
    # own __init__ re-exports every layer, which import nothing of it: its own edges are left
    # out, so that a module importing the package root still shows as a cycle.
    graph = _graph()
    graph["compile_policy"] = set()
    assert _cycles(graph) == []
    assert not [name for name, targets in graph.items() if "compile_policy" in targets]


def test_the_cycle_finder_finds_a_cycle_through_a_lazy_import() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_is_over_300_lines() -> None:
    lengths = {name: len(path.read_text().splitlines()) for name, path in _modules()}
    assert {name: n for name, n in lengths.items() if n > 300} == {}


def test_the_top_level_holds_at_most_12_entries_and_every_module_is_public_or_private_by_name() -> None:
    entries = sorted(p.name for p in PACKAGE.iterdir() if p.name not in {"py.typed", "__pycache__"})
    assert len(entries) <= 12, entries
    for name, _path in _modules():
        inside = name.split(".")[1:]
        assert name in PUBLIC or any(part.startswith("_") for part in inside), name
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"} == set(LAYERS)


def test_the_plugin_imports_neither_torch_nor_the_compiled_layer_at_module_level() -> None:
    # The plugin loads in every pytest run; it reaches governance (and through it torch) only
    # inside the hooks of the settings that need it. test_imports checks the same at run time.
    for name, path in _modules():
        if name.startswith("compile_policy.pytest_plugin"):
            top = {target for target, at_top in _imports(name, path) if at_top}
            assert not {t for t in top if t == "torch" or t.startswith("torch.")}, name
            heavy = ("compile_policy._compiled", "compile_policy._governance")
            assert not {t for t in top if t.startswith(heavy)}, name


def test_the_layers_below_the_compiled_objects_never_import_torch_even_lazily() -> None:
    for name, path in _modules():
        if name.split(".")[1:2] and name.split(".")[1] in {"_base", "_policy", "_context"}:
            targets = {target for target, _top in _imports(name, path)}
            assert not {t for t in targets if t == "torch" or t.startswith("torch.")}, name


def test_the_import_linter_contracts_hold() -> None:
    # Like test_typing's mypy: the contracts in pyproject.toml, run as `make lint` runs them.
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint_imports is None:
        pytest.skip("import-linter is not installed (it is in the dev extra: make test installs it)")
    done = subprocess.run([lint_imports, "--no-cache"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout, done.stdout
