"""Every import a module makes, read from its source, and what a fresh interpreter loads.

The static side parses each file with ``ast`` instead of importing it, so it sees what an
import at run time could miss: imports inside functions (which run only when the function
does), imports under ``if TYPE_CHECKING:`` and ``importlib.import_module("...")`` or
``__import__("...")`` with a literal name. Relative imports are resolved to absolute names.
``from x import y`` is recorded as both ``x`` and ``x.y``: ``y`` may be a submodule, and a
name that is not one is harmless, since ``x`` itself is checked too.

The dynamic side imports modules in a fresh interpreter and reports ``sys.modules``, which is
what a process that runs the operator actually holds.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "proxmox_vm_operator"
ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOT = ROOT / "operator"  # the directory that holds the package: sys.path's entry


@dataclass(frozen=True)
class Import:
    file: Path
    line: int
    module: str  # absolute dotted name
    lazy: bool  # inside a function body: it runs only when the function is called

    def describe(self, root: Path) -> str:
        where = self.file.relative_to(root) if self.file.is_relative_to(root) else self.file
        return f"{where}:{self.line} imports {self.module}" + (
            " (inside a function)" if self.lazy else ""
        )


def module_name(source_root: Path, file: Path) -> str:
    """The dotted name ``file`` is imported as when ``source_root`` is on sys.path."""
    parts = list(file.relative_to(source_root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_parts(source_root: Path, file: Path) -> list[str]:
    """The package a relative import in ``file`` starts from (``__package__``)."""
    parts = module_name(source_root, file).split(".")
    return parts if file.name == "__init__.py" else parts[:-1]


def resolve(level: int, module: str | None, package: list[str], file: Path) -> str:
    """The absolute name of ``from <level dots><module> import ...`` in ``package``."""
    if level == 0:
        return module or ""
    if level - 1 >= len(package):
        raise ValueError(f"{file}: a relative import goes above the top-level package")
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, module] if module else base)


_DYNAMIC = {"import_module", "__import__"}


class _Collector(ast.NodeVisitor):
    def __init__(self, file: Path, package: list[str]) -> None:
        self.file = file
        self.package = package
        self.depth = 0  # how many function bodies enclose the current node
        self.found: list[Import] = []

    def _add(self, node: ast.AST, module: str) -> None:
        line = getattr(node, "lineno", 0)
        self.found.append(Import(self.file, line, module, self.depth > 0))

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        # Decorators and default values run when the function is defined, not called.
        if not isinstance(node, ast.Lambda):
            for decorator in node.decorator_list:
                self.visit(decorator)
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)
        self.depth += 1
        for child in node.body if isinstance(node.body, list) else [node.body]:
            self.visit(child)
        self.depth -= 1

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function
    visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = resolve(node.level, node.module, self.package, self.file)
        self._add(node, base)
        for alias in node.names:
            if alias.name != "*":
                self._add(node, f"{base}.{alias.name}")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name in _DYNAMIC and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                text = first.value
                dots = len(text) - len(text.lstrip("."))
                self._add(node, resolve(dots, text[dots:] or None, self.package, self.file))
        self.generic_visit(node)


def imports_in(source_root: Path, file: Path) -> list[Import]:
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    collector = _Collector(file, _package_parts(source_root, file))
    collector.visit(tree)
    return collector.found


def function_imports(source_root: Path, file: Path, function: str) -> list[Import]:
    """The imports inside the module-level function ``function`` of ``file``."""
    tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            collector = _Collector(file, _package_parts(source_root, file))
            collector.visit(node)
            return collector.found
    raise LookupError(f"{file} has no function {function}")


def python_files(path: Path) -> list[Path]:
    """``path`` itself if it is a file, else every .py file under it."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)


def within(module: str, prefix: str) -> bool:
    """``module`` is ``prefix`` or one of its submodules."""
    return module == prefix or module.startswith(prefix + ".")


def offending(source_root: Path, files: Iterable[Path], forbidden: Iterable[str]) -> list[Import]:
    """Every import in ``files`` of a module within one of ``forbidden``."""
    forbidden = tuple(forbidden)
    return [
        found
        for file in files
        for found in imports_in(source_root, file)
        if any(within(found.module, prefix) for prefix in forbidden)
    ]


def parts_of(package_dir: Path) -> dict[str, Path]:
    """The package's direct parts, by absolute name: modules and subpackages."""
    package = package_dir.name
    parts: dict[str, Path] = {}
    for child in sorted(package_dir.iterdir()):
        if child.suffix == ".py" and child.name != "__init__.py":
            parts[f"{package}.{child.stem}"] = child
        elif child.is_dir() and (child / "__init__.py").exists():
            parts[f"{package}.{child.name}"] = child
    return parts


def report(found: Iterable[Import], root: Path = ROOT) -> str:
    return "\n".join(item.describe(root) for item in found)


# ------------------------------------------------------------------------- dynamic side

_LOADER = """
import importlib, json, sys
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name or "." not in name:
            raise
        # 'from x import y' is recorded as x.y too; y was a name in x, not a module.
package = sys.modules.get(sys.argv[2])
print(json.dumps({"modules": sorted(sys.modules), "file": getattr(package, "__file__", None)}))
"""


@dataclass(frozen=True)
class Loaded:
    modules: frozenset[str]
    package_file: str | None


def load_in_fresh_interpreter(names: Iterator[str] | Iterable[str], source_root: Path) -> Loaded:
    """Import ``names`` in a new interpreter with ``source_root`` first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(source_root), *filter(None, [env.get("PYTHONPATH")])])
    done = subprocess.run(
        [sys.executable, "-c", _LOADER, json.dumps(list(names)), PACKAGE],
        env=env,
        cwd=source_root,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return Loaded(frozenset(answer["modules"]), answer["file"])
