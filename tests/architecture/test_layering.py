"""The layering of docs/design.md ("Architecture"), held by the imports themselves.

- ``domain/`` is the pure core: no kopf, no Kubernetes or HTTP client, no I/O module, and
  nothing of the layers around it (controller, proxmox, handlers, kube, metrics, the
  stand-ins...). Any other part the package grows is forbidden to it as well.
- ``proxmox/`` is the one client module: it knows Proxmox VE and nothing of the operator
  around it, not even the domain (the controller turns its answers into the domain's
  observations), and nothing of kopf or Kubernetes.
- ``controller/`` observes, asks the domain and acts; kopf stays in ``handlers.py``.
- The simulator shares no code with the operator, so a test of the client against it is a
  test against an independent implementation.
- Each outside library has one home: proxmoxer and requests in ``proxmox/``, kubernetes in
  ``kube.py``, kopf in ``handlers.py`` (and ``cli.py``, which starts it), prometheus_client in
  ``metrics.py`` (and ``cli.py``, which serves it).
- The operator's runtime path never imports the simulator or the sandbox: checked in the
  source, and in a fresh interpreter that imports what ``proxmox-vm-operator run`` imports.

The static checks read the source with ``ast`` (see ``imports.py``), so an import inside a
function or under ``TYPE_CHECKING`` is held to the same rules. The tests at the end run the
same rules on a small fake package with planted violations: each rule can fail.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterable
from pathlib import Path

import pytest

from .imports import (
    PACKAGE,
    SOURCE_ROOT,
    Import,
    function_imports,
    imports_in,
    load_in_fresh_interpreter,
    module_name,
    offending,
    parts_of,
    python_files,
    report,
    within,
)

# Frameworks, clients and I/O modules a pure core has no use for.
DOMAIN_FORBIDDEN_LIBRARIES = (
    "kopf",
    "kubernetes",
    "proxmoxer",
    "requests",
    "urllib3",
    "aiohttp",
    "http",
    "urllib.request",
    "socket",
    "ssl",
    "subprocess",
    "prometheus_client",
    "kmock",
)
# The Proxmox client knows nothing of Kubernetes or of how its calls are counted (it reports
# them to an observer that metrics.py supplies).
CLIENT_FORBIDDEN_LIBRARIES = ("kopf", "kubernetes", "kmock", "prometheus_client")
STAND_INS = ("simulator", "sandbox")
# What `proxmox-vm-operator run` imports, besides what its command function imports.
RUNTIME_ENTRY_POINTS = (
    "handlers",
    "controller.reconciler",
    "controller.destroyer",
    "kube",
    "metrics",
    "cli",
)
# Each outside library and the parts of the runtime path that may import it.
LIBRARY_HOMES = {
    "kopf": ("handlers", "cli"),
    "kubernetes": ("kube",),
    "prometheus_client": ("metrics", "cli"),
}
CLIENT_LIBRARIES = ("proxmoxer", "requests", "urllib3")


def _name(part: str) -> str:
    return f"{PACKAGE}.{part}"


def _parts(source_root: Path) -> dict[str, Path]:
    return parts_of(source_root / PACKAGE)


def _all_but(source_root: Path, *keep: str) -> list[str]:
    """Every part of the package except ``keep``: what the others may not import."""
    kept = {_name(part) for part in keep}
    return [name for name in _parts(source_root) if name not in kept]


def _files(source_root: Path, part: str) -> list[Path]:
    return python_files(_parts(source_root)[_name(part)])


def _runtime_files(source_root: Path) -> list[Path]:
    """Every module of the package except the stand-ins."""
    stand_ins = [_parts(source_root)[_name(part)] for part in STAND_INS]
    return [
        file
        for file in python_files(source_root / PACKAGE)
        if not any(file.is_relative_to(folder) for folder in stand_ins)
    ]


# ------------------------------------------------------------------------------ the rules


def domain_violations(source_root: Path) -> list[Import]:
    forbidden = [*DOMAIN_FORBIDDEN_LIBRARIES, *_all_but(source_root, "domain")]
    return offending(source_root, _files(source_root, "domain"), forbidden)


def client_violations(source_root: Path) -> list[Import]:
    forbidden = [*CLIENT_FORBIDDEN_LIBRARIES, *_all_but(source_root, "proxmox")]
    return offending(source_root, _files(source_root, "proxmox"), forbidden)


def controller_violations(source_root: Path) -> list[Import]:
    forbidden = ["kopf", "kmock", *(_name(p) for p in ("handlers", "cli", *STAND_INS))]
    return offending(source_root, _files(source_root, "controller"), forbidden)


def simulator_violations(source_root: Path) -> list[Import]:
    forbidden = _all_but(source_root, "simulator")
    return offending(source_root, _files(source_root, "simulator"), forbidden)


def client_library_violations(source_root: Path) -> list[Import]:
    """proxmoxer and requests anywhere in the package but proxmox/ (stand-ins included)."""
    client = _parts(source_root)[_name("proxmox")]
    files = [f for f in python_files(source_root / PACKAGE) if not f.is_relative_to(client)]
    return offending(source_root, files, CLIENT_LIBRARIES)


def library_home_violations(source_root: Path, library: str) -> list[Import]:
    homes = [_parts(source_root)[_name(part)] for part in LIBRARY_HOMES[library]]
    files = [
        f
        for f in _runtime_files(source_root)
        if not any(f == home or f.is_relative_to(home) for home in homes)
    ]
    return offending(source_root, files, [library])


def run_command_function(source_root: Path) -> str:
    """The function the ``run`` subcommand calls, read from cli.py: the one passed as
    ``set_defaults(run=...)`` to the parser made by ``add_parser("run", ...)``."""
    tree = ast.parse((source_root / PACKAGE / "cli.py").read_text(encoding="utf-8"))
    parsers: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
            and node.value.func.attr == "add_parser"
            and node.value.args
            and isinstance(node.value.args[0], ast.Constant)
            and node.value.args[0].value == "run"
        ):
            parsers.update(t.id for t in node.targets if isinstance(t, ast.Name))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "set_defaults"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in parsers
        ):
            for keyword in node.keywords:
                if keyword.arg == "run" and isinstance(keyword.value, ast.Name):
                    return keyword.value.id
    raise LookupError("cli.py: no `run` subcommand with set_defaults(run=...)")


def run_command_imports(source_root: Path) -> list[Import]:
    cli = source_root / PACKAGE / "cli.py"
    return function_imports(source_root, cli, run_command_function(source_root))


def stand_in_violations(source_root: Path) -> list[Import]:
    """Imports of the simulator or the sandbox on the runtime path. Only cli.py may import
    them, and only inside the functions of the commands that use them (never `run`'s)."""
    cli = source_root / PACKAGE / "cli.py"
    stand_ins = [_name(part) for part in STAND_INS]
    found = offending(source_root, _runtime_files(source_root), stand_ins)
    run = run_command_imports(source_root)
    lazy_elsewhere = [f for f in found if f.file == cli and f.lazy and f not in run]
    return [f for f in found if f not in lazy_elsewhere]


def run_path_modules(source_root: Path) -> list[str]:
    """What a process running the operator imports: the entry points and whatever the
    ``run`` command's function imports when it is called."""
    lazy = [found.module for found in run_command_imports(source_root)]
    return [*(_name(part) for part in RUNTIME_ENTRY_POINTS), *lazy]


def stand_ins_loaded(modules: Iterable[str]) -> set[str]:
    stand_ins = [_name(part) for part in STAND_INS]
    return {m for m in modules if any(within(m, s) for s in stand_ins)}


# ------------------------------------------------------------------- the real package


def test_the_rules_read_real_code() -> None:
    """A rule over no files, or naming a part that was renamed away, would pass for nothing."""
    parts = _parts(SOURCE_ROOT)
    for part in (
        "domain",
        "controller",
        "proxmox",
        "handlers",
        "kube",
        "metrics",
        "cli",
        *STAND_INS,
        *RUNTIME_ENTRY_POINTS,
        *(home for homes in LIBRARY_HOMES.values() for home in homes),
    ):
        assert _name(part.split(".")[0]) in parts, part
    for part in ("domain", "proxmox", "controller", "simulator"):
        assert _files(SOURCE_ROOT, part), part
    domain_imports = [
        found.module
        for file in _files(SOURCE_ROOT, "domain")
        for found in imports_in(SOURCE_ROOT, file)
    ]
    assert "pydantic" in domain_imports  # the collector does see the domain's imports
    assert _name("domain.model") in domain_imports  # relative ones resolved


def test_the_domain_imports_no_framework_no_io_and_no_outer_layer() -> None:
    violations = domain_violations(SOURCE_ROOT)
    assert not violations, "the domain must stay pure:\n" + report(violations)


def test_the_proxmox_client_knows_nothing_of_kubernetes_or_the_rest_of_the_operator() -> None:
    violations = client_violations(SOURCE_ROOT)
    assert not violations, "proxmox/ must stand alone:\n" + report(violations)


def test_the_controller_imports_no_kopf_and_no_stand_in() -> None:
    violations = controller_violations(SOURCE_ROOT)
    assert not violations, "kopf belongs in handlers.py:\n" + report(violations)


def test_the_simulator_shares_no_code_with_the_operator() -> None:
    violations = simulator_violations(SOURCE_ROOT)
    assert not violations, "the simulator must stay independent:\n" + report(violations)


def test_only_the_client_module_imports_proxmoxer_and_requests() -> None:
    violations = client_library_violations(SOURCE_ROOT)
    assert not violations, "every Proxmox call goes through proxmox/:\n" + report(violations)


@pytest.mark.parametrize("library", sorted(LIBRARY_HOMES))
def test_each_outside_library_has_one_home_on_the_runtime_path(library: str) -> None:
    violations = library_home_violations(SOURCE_ROOT, library)
    homes = ", ".join(LIBRARY_HOMES[library])
    assert not violations, f"{library} belongs in {homes}:\n" + report(violations)


def test_the_run_command_is_found_where_the_parser_says() -> None:
    from proxmox_vm_operator import cli

    command = cli.build_parser().parse_args(["run"]).run
    assert run_command_function(SOURCE_ROOT) == command.__name__
    assert run_command_imports(SOURCE_ROOT), "the run command imports lazily; follow those"


def test_the_runtime_path_imports_no_stand_in_in_its_source() -> None:
    violations = stand_in_violations(SOURCE_ROOT)
    assert not violations, (
        "the simulator and the sandbox are imported only by the cli commands that use "
        "them, inside their functions:\n" + report(violations)
    )


def test_a_process_running_the_operator_loads_no_stand_in() -> None:
    modules = run_path_modules(SOURCE_ROOT)
    assert _name("controller.destroyer") in modules
    loaded = load_in_fresh_interpreter(modules, SOURCE_ROOT)
    assert loaded.package_file is not None
    assert Path(loaded.package_file).is_relative_to(SOURCE_ROOT / PACKAGE)
    assert _name("handlers") in loaded.modules and "kopf" in loaded.modules
    assert not stand_ins_loaded(loaded.modules)


def test_the_domain_loads_no_framework_in_a_fresh_interpreter() -> None:
    modules = [module_name(SOURCE_ROOT, f) for f in _files(SOURCE_ROOT, "domain")]
    loaded = load_in_fresh_interpreter(modules, SOURCE_ROOT)
    assert _name("domain.destroy") in loaded.modules
    frameworks = {"kopf", "kubernetes", "proxmoxer", "requests", "urllib3", "aiohttp", "kmock"}
    assert not {m for m in loaded.modules if m.split(".")[0] in frameworks}
    ours = {m for m in loaded.modules if within(m, PACKAGE)}
    assert ours <= {PACKAGE} | {m for m in ours if within(m, _name("domain"))}, ours


# ---------------------------------------------------- the rules on planted violations


def _write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / PACKAGE / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


def _found(violations: Iterable[Import], root: Path) -> set[tuple[str, int, str, bool]]:
    return {(str(v.file.relative_to(root / PACKAGE)), v.line, v.module, v.lazy) for v in violations}


# A package with the real one's shape, never imported: every rule broken once or more.
PLANTED = {
    "__init__.py": "",
    "domain/__init__.py": "from . import model\n",
    "domain/model.py": """
        import datetime
        import urllib.parse
        from collections.abc import Mapping

        from pydantic import BaseModel
        """,
    "domain/destroy.py": """
        import importlib
        from typing import TYPE_CHECKING

        import kopf
        from ..controller import destroyer
        from .. import sandbox
        from .model import BaseModel

        if TYPE_CHECKING:
            import kubernetes


        def later():
            import requests
            from ..proxmox.client import ProxmoxClient

            return importlib.import_module("proxmoxer")


        class Later:
            def method(self):
                from http import client

                return lambda: __import__("aiohttp")
        """,
    "domain/deep/__init__.py": "",
    "domain/deep/leaf.py": "from ...metrics import destroy_duration\n",
    "proxmox/__init__.py": "from .client import ProxmoxClient\n",
    "proxmox/client.py": """
        import requests
        from proxmoxer import ProxmoxAPI

        from ..domain.model import BaseModel
        """,
    "controller/__init__.py": "",
    "controller/destroyer.py": """
        from ..domain import destroy
        from ..proxmox import ProxmoxClient
        from .. import kube, metrics
        """,
    "controller/reconciler.py": """
        def later():
            import kopf
        """,
    "handlers.py": """
        import kopf

        from .sandbox import demo
        """,
    "kube.py": "import kubernetes\n",
    "metrics.py": """
        import prometheus_client
        import requests
        """,
    "cli.py": """
        import argparse


        def _run(args):
            import kopf
            import prometheus_client

            from . import handlers
            from .simulator import server


        def _demo(args):
            from .sandbox.demo import run


        def build_parser():
            parser = argparse.ArgumentParser()
            commands = parser.add_subparsers()
            run = commands.add_parser("run")
            run.set_defaults(run=_run)
            demo = commands.add_parser("demo")
            demo.set_defaults(run=_demo)
            return parser
        """,
    "simulator/__init__.py": "",
    "simulator/server.py": """
        import kubernetes

        from ..proxmox import client
        """,
    "sandbox/__init__.py": "",
    "sandbox/demo.py": """
        import kopf
        import requests

        from ..simulator import server
        """,
}


def test_the_domain_rule_catches_every_kind_of_import(tmp_path: Path) -> None:
    root = _write(tmp_path, PLANTED)
    p = PACKAGE
    assert _found(domain_violations(root), root) == {
        ("domain/destroy.py", 4, "kopf", False),
        ("domain/destroy.py", 5, f"{p}.controller", False),
        ("domain/destroy.py", 5, f"{p}.controller.destroyer", False),
        ("domain/destroy.py", 6, f"{p}.sandbox", False),  # from .. import sandbox
        ("domain/destroy.py", 10, "kubernetes", False),  # under TYPE_CHECKING
        ("domain/destroy.py", 14, "requests", True),
        ("domain/destroy.py", 15, f"{p}.proxmox.client", True),
        ("domain/destroy.py", 15, f"{p}.proxmox.client.ProxmoxClient", True),
        ("domain/destroy.py", 17, "proxmoxer", True),  # importlib.import_module("proxmoxer")
        ("domain/destroy.py", 22, "http", True),  # in a method
        ("domain/destroy.py", 22, "http.client", True),
        ("domain/destroy.py", 24, "aiohttp", True),  # __import__ in a lambda
        ("domain/deep/leaf.py", 1, f"{p}.metrics", False),  # three dots, resolved
        ("domain/deep/leaf.py", 1, f"{p}.metrics.destroy_duration", False),
    }


def test_the_other_rules_catch_their_violations(tmp_path: Path) -> None:
    root = _write(tmp_path, PLANTED)
    p = PACKAGE
    assert _found(client_violations(root), root) == {
        ("proxmox/client.py", 4, f"{p}.domain.model", False),
        ("proxmox/client.py", 4, f"{p}.domain.model.BaseModel", False),
    }
    assert _found(controller_violations(root), root) == {
        ("controller/reconciler.py", 2, "kopf", True),
    }
    assert _found(simulator_violations(root), root) == {
        ("simulator/server.py", 3, f"{p}.proxmox", False),
        ("simulator/server.py", 3, f"{p}.proxmox.client", False),
    }
    assert _found(client_library_violations(root), root) == {
        ("domain/destroy.py", 14, "requests", True),
        ("domain/destroy.py", 17, "proxmoxer", True),
        ("metrics.py", 2, "requests", False),
        ("sandbox/demo.py", 2, "requests", False),
    }
    assert _found(library_home_violations(root, "kopf"), root) == {
        ("domain/destroy.py", 4, "kopf", False),
        ("controller/reconciler.py", 2, "kopf", True),
    }
    assert _found(library_home_violations(root, "kubernetes"), root) == {
        ("domain/destroy.py", 10, "kubernetes", False),
    }
    assert not library_home_violations(root, "prometheus_client")
    # handlers.py imports the sandbox; cli.py's `_run` imports the simulator (lazily, but
    # it is the run command's); `_demo` importing the sandbox is allowed.
    assert run_command_function(root) == "_run"
    assert _found(stand_in_violations(root), root) == {
        ("domain/destroy.py", 6, f"{p}.sandbox", False),
        ("handlers.py", 3, f"{p}.sandbox", False),
        ("handlers.py", 3, f"{p}.sandbox.demo", False),
        ("cli.py", 9, f"{p}.simulator", True),
        ("cli.py", 9, f"{p}.simulator.server", True),
    }


def test_a_fresh_interpreter_shows_a_stand_in_the_runtime_path_loads(tmp_path: Path) -> None:
    """An importable fake: kube.py pulls in the sandbox at import time (through handlers),
    and the run command's function imports the simulator when it is called."""
    root = _write(
        tmp_path,
        {
            "__init__.py": "",
            "handlers.py": "from . import kube\n",
            "kube.py": "from .sandbox import demo\n",
            "metrics.py": "",
            "controller/__init__.py": "",
            "controller/reconciler.py": "",
            "controller/destroyer.py": "",
            "cli.py": PLANTED["cli.py"]
            .replace("import kopf", "import json")
            .replace("import prometheus_client", "import os"),
            "sandbox/__init__.py": "",
            "sandbox/demo.py": "",
            "simulator/__init__.py": "",
            "simulator/server.py": "",
        },
    )
    loaded = load_in_fresh_interpreter(run_path_modules(root), root)
    assert loaded.package_file is not None
    assert Path(loaded.package_file).is_relative_to(tmp_path)  # the fake, not the real one
    assert stand_ins_loaded(loaded.modules) == {
        f"{PACKAGE}.sandbox",
        f"{PACKAGE}.sandbox.demo",
        f"{PACKAGE}.simulator",
        f"{PACKAGE}.simulator.server",
    }
