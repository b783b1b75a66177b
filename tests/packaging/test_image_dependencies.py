"""What the image installs is enough: the wheel the Dockerfile builds, plus the base dependencies.

Without a Docker engine, this builds the wheel from exactly the files the Dockerfile copies
(filtered by .dockerignore), installs it into a scratch directory, and imports the operator and
the simulator in a fresh interpreter that can see nothing but the standard library, the wheel
and the distributions the base dependencies pull in: kmock, pytest and the other test and
sandbox extras are unimportable there, as they are in the image.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .dockerfile import ROOT, DockerIgnore, load_stages

PACKAGE = "proxmox_vm_operator"


def _build_context(target: Path) -> None:
    """The files the build stage COPYs from the context, where the Dockerfile puts them."""
    ignore = DockerIgnore.read()
    for stage in load_stages():
        for copy in stage.all("COPY"):
            if "from" in copy.flags():
                continue
            *sources, destination = copy.words()
            for source in sources:
                origin = ROOT / source
                files = [origin] if origin.is_file() else sorted(origin.rglob("*"))
                for file in files:
                    relative = str(file.relative_to(ROOT))
                    if not file.is_file() or ignore.excluded(relative):
                        continue
                    inside = file.name if origin.is_file() else str(file.relative_to(origin))
                    placed = target / destination / inside
                    placed.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(file, placed)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    scratch = tmp_path_factory.mktemp("image")
    context = scratch / "context"
    _build_context(context)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
         str(scratch / "wheels"), str(context)],
        check=True,
        timeout=120,
    )  # fmt: skip
    (built,) = (scratch / "wheels").glob("*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path) -> Path:
    target = wheel.parent.parent / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
         "--target", str(target), str(wheel)],
        check=True,
        timeout=120,
    )  # fmt: skip
    return target


def _base_distributions() -> set[str]:
    """The distributions the base dependencies need, transitively, on this interpreter."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    todo = [Requirement(text) for text in project["dependencies"]]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        requirement = todo.pop()
        key = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        for text in metadata.distribution(requirement.name).requires or []:
            needed = Requirement(text)
            extras = requirement.extras or {""}
            if needed.marker is None or any(needed.marker.evaluate({"extra": e}) for e in extras):
                todo.append(needed)
    return {name for name, _ in seen}


def _importable_names() -> set[str]:
    """Top-level import names that the image provides besides the standard library."""
    base = _base_distributions()
    return {PACKAGE} | {
        module
        for module, distributions in metadata.packages_distributions().items()
        if any(canonicalize_name(d) in base for d in distributions)
    }


# Runs in a fresh interpreter: -I (no PYTHONPATH, no user site), -S (no site-packages and no
# .pth files, so not the editable install of this checkout either). Site-packages is reached
# only through the finder below, for the names the base dependencies provide; anything else
# is simply absent, as in the image (so optional imports that probe for it behave as there).
_ONLY_THE_IMAGE = """
import importlib, importlib.abc, importlib.machinery, json, sys
given = json.loads(sys.argv[1])
target, allowed, site = given["target"], set(given["allowed"]), given["site"]
sys.path.insert(0, target)  # the wheel, and the standard library: all sys.path holds

# Finds top-level modules in site-packages only if the image would have them.
class SiteAsInTheImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if path is not None or name not in allowed:
            return None  # submodules, the standard library and the wheel: the usual way
        return importlib.machinery.PathFinder.find_spec(name, site)

sys.meta_path.append(SiteAsInTheImage())
for absent in ("kmock", "pytest", "pytest_asyncio", "mypy"):
    try:
        importlib.import_module(absent)
    except ModuleNotFoundError:
        pass
    else:
        sys.exit(f"{absent} should not be importable here")
for module in given["modules"]:
    loaded = importlib.import_module(module)
    assert loaded.__file__.startswith(target), (module, loaded.__file__)
from proxmox_vm_operator.cli import build_parser
for argv in (["run", "-A"], ["simulator", "--nodes", "pve1,pve2"], ["crd"]):
    build_parser().parse_args(argv)
print(json.dumps(sorted(m for m in sys.modules if m.partition(".")[0] == "proxmox_vm_operator")))
"""


def _wheel_modules(wheel: Path) -> list[str]:
    """Every module in the wheel but the sandbox (it needs kmock; the image never runs it)."""
    modules = []
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not (name.startswith(f"{PACKAGE}/") and name.endswith(".py")):
                continue
            dotted = name.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            if dotted.startswith(f"{PACKAGE}.sandbox") or dotted.endswith("__main__"):
                continue
            modules.append(dotted)
    return sorted(modules)


def _run_as_in_the_image(installed: Path, modules: list[str]) -> subprocess.CompletedProcess[str]:
    paths = sysconfig.get_paths()
    given = {
        "target": str(installed),
        "site": sorted({paths["purelib"], paths["platlib"]}),
        "allowed": sorted(_importable_names()),
        "modules": modules,
    }
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", _ONLY_THE_IMAGE, json.dumps(given)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_wheel_holds_the_package_its_type_marker_and_the_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    for module in ("__init__.py", "cli.py", "handlers.py", "py.typed", "simulator/server.py"):
        assert f"{PACKAGE}/{module}" in names, module
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)
    assert "proxmox-vm-operator = proxmox_vm_operator.cli:main" in scripts


def test_the_base_dependencies_do_not_pull_in_the_test_or_sandbox_extras() -> None:
    importable = _importable_names()
    assert {"kopf", "kubernetes", "aiohttp", "pydantic", "yaml", "cryptography"} <= importable
    assert not {"kmock", "pytest", "pytest_asyncio", "xdist", "mypy", "ruff"} & importable


def test_operator_and_simulator_import_with_only_the_base_dependencies(
    wheel: Path, installed: Path
) -> None:
    modules = _wheel_modules(wheel)
    for needed in ("cli", "handlers", "simulator", "crd"):
        assert f"{PACKAGE}.{needed}" in modules
    result = _run_as_in_the_image(installed, modules)
    assert result.returncode == 0, result.stderr
    assert set(modules) <= set(json.loads(result.stdout))


def test_the_sandbox_alone_needs_an_extra(installed: Path) -> None:
    """The check above is not vacuous: the same interpreter cannot import the sandbox."""
    result = _run_as_in_the_image(installed, [f"{PACKAGE}.sandbox.emulator"])
    assert result.returncode != 0
    assert "No module named 'kmock'" in result.stderr
