"""The package layout shows the architecture (issue 18): imports point one way and modules stay short.

Cheap: it only parses the source of src/shopper_segments with `ast`, no warehouse, no import.

- No import circle: every `import` and `from ... import` counts, relative or absolute, at the top of
  a module or lazily inside a function. `from package import name` points at the module
  `package.name` when there is one, else at the package's `__init__`.
- No module over HARD_LIMIT lines; a module over SOFT_LIMIT lines says why in its opening
  docstring, on a line starting with LENGTH_MARKER ("Length: ...").
- Every file of the package that is not Python (the report's templates) is named in pyproject's
  package-data: else a built wheel, and so the container image, goes without it.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

PACKAGE = "shopper_segments"
SOURCE = Path(__file__).resolve().parents[2] / "src" / PACKAGE
SOFT_LIMIT = 500
HARD_LIMIT = 600
LENGTH_MARKER = "Length:"



def module_files() -> dict[str, Path]:
    """Dotted module name -> file, a package being its `__init__.py`."""
    modules = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = (PACKAGE, *path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports (anywhere in its body)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    source = f"{base}.{node.module}" if node.module else base
                else:
                    source = node.module or ""
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                           for alias in node.names]
            else:
                continue
            graph[name] |= {target for target in targets if target in modules and target != name}
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = list(graph[start])
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(graph[node])
    return seen


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles, as the groups of modules that import each other (directly or not)."""
    reach = {name: reachable(graph, name) for name in graph}
    groups = {frozenset(other for other in reach[name] if name in reach[other])
              for name in graph if name in reach[name]}
    return sorted(sorted(group) for group in groups)


def long_modules() -> dict[str, str]:
    """Module -> what is wrong with its length."""
    wrong = {}
    for name, path in module_files().items():
        lines = len(path.read_text().splitlines())
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        stated = any(line.strip().startswith(LENGTH_MARKER) for line in docstring.splitlines())
        if lines > HARD_LIMIT:
            wrong[name] = f"{lines} lines (limit {HARD_LIMIT})"
        elif lines > SOFT_LIMIT and not stated:
            wrong[name] = f"{lines} lines, over {SOFT_LIMIT} without a '{LENGTH_MARKER}' reason in its docstring"
    return wrong


def describe_circles(found: list[list[str]]) -> str:
    return "; ".join(" <-> ".join(group) for group in found)


def test_the_graph_sees_relative_lazy_and_package_imports():
    """The checks below can only fail if the graph sees the imports the package really has."""
    graph = import_graph(module_files())
    assert "shopper_segments.generate.events" in graph["shopper_segments.generate"]  # from .events import
    assert "shopper_segments.generate" in graph["shopper_segments.bench"]  # lazy, inside benchmark()
    assert "shopper_segments.settings" in graph["shopper_segments.bench"]  # from .. import settings
    assert "shopper_segments.model.params" in graph["shopper_segments.model.analyses.study"]  # from ..params import
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    found = circles(import_graph(module_files()))
    print("import circles:", describe_circles(found) or "none")
    assert not found, f"import circles: {describe_circles(found)}"


def test_no_long_module():
    wrong = long_modules()
    print("too long:", wrong or "none")
    assert not wrong, f"modules too long: {wrong}"


def test_every_file_that_is_not_python_ships_with_the_package():
    """setuptools puts only Python files in a wheel unless package-data names the others (the image
    installs a wheel: `pip install .`); a template left out would fail only at `segments report` there."""
    project = tomllib.loads((SOURCE.parents[1] / "pyproject.toml").read_text())
    package_data = project["tool"]["setuptools"].get("package-data", {})
    data_files = [path for path in SOURCE.rglob("*") if path.is_file() and path.suffix not in (".py", ".pyc")]
    assert data_files, "the report's templates are not where this test looks"
    unshipped = []
    for path in data_files:
        relative = path.relative_to(SOURCE.parent)
        packages = [".".join(relative.parts[:i]) for i in range(1, len(relative.parts))]
        if not any(path.relative_to(SOURCE.parent / package.replace(".", "/")).match(pattern)
                   for package in packages for pattern in package_data.get(package, [])):
            unshipped.append(str(relative))
    assert not unshipped, f"not in [tool.setuptools.package-data] of pyproject.toml: {unshipped}"
