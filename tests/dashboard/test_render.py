"""docs/render_dashboard.py against a real Prometheus scraping the operator's real metrics.

Prometheus (the binary CI installs) runs on loopback with a 1 s scrape interval and scrapes
`exporter.py`, which serves what the real metric objects produce.
"""

from __future__ import annotations

import importlib.util
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

from proxmox_vm_operator.metrics import PHASES, STALL_REASONS, STEPS
from proxmox_vm_operator.monitoring.dashboard import DEFAULT_JOB, dashboard

from ..prometheus_server import PrometheusServer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "render_dashboard.py"
EXPORTER = Path(__file__).with_name("exporter.py")
SCRAPES_BEFORE_RENDER = 3  # so the last 4 s rate window holds at least two samples


def _scrapes(server: PrometheusServer) -> bool:
    query = f'count_over_time(proxmoxvm_destroy_fallback_total{{job="{DEFAULT_JOB}"}}[1m])'
    found = server.query(query)
    return bool(found) and float(found[0]["value"][1]) >= SCRAPES_BEFORE_RENDER


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a Prometheus that has scraped the exporter a few times."""
    workdir = tmp_path_factory.mktemp("dashboard-prometheus")
    exporter = subprocess.Popen([sys.executable, str(EXPORTER)], stdout=subprocess.PIPE, text=True)
    try:
        assert exporter.stdout is not None
        exporter_port = int(exporter.stdout.readline())
        targets = {DEFAULT_JOB: [f"127.0.0.1:{exporter_port}"]}
        with PrometheusServer(workdir, targets=targets) as server:
            server.wait_for(
                lambda: _scrapes(server), timeout=60, what=f"{SCRAPES_BEFORE_RENDER} scrapes"
            )
            yield server.url
    finally:
        exporter.terminate()
        exporter.wait(timeout=20)


@pytest.fixture(scope="module")
def renderer() -> Iterator[ModuleType]:
    """The script, imported as a module (it is not part of the package)."""
    spec = importlib.util.spec_from_file_location("render_dashboard", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def _render(
    renderer: ModuleType, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> dict[str, int]:
    assert renderer.main(argv) == 0
    out = capsys.readouterr().out
    return {title: int(n) for n, title in re.findall(r"^\s*(\d+) series  (.+)$", out, re.M)}


def _assert_png(path: Path) -> tuple[int, int]:
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert 1000 <= width <= 4000 and 1000 <= height <= 4000, (width, height)
    assert 20_000 < path.stat().st_size < 10_000_000
    return width, height


def test_renders_every_panel_with_data_from_prometheus(
    prometheus: str, renderer: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dashboard.png"
    argv = ["--prometheus", prometheus, "--minutes", "1", "--scrape-interval", "1"]
    report = _render(renderer, [*argv, "--out", str(out)], capsys)

    assert list(report) == [p["title"] for p in dashboard()["panels"]]
    empty = [title for title, series in report.items() if series == 0]
    assert not empty, f"panels without data: {empty}"
    assert report["Destroys in flight by object"] == 2  # lab/web-1 and lab/db-1
    # Every step, stall reason and phase is exported, at zero when nothing is in it.
    assert report["Destroys in progress by step"] == len(STEPS)
    assert report["Stalled destroys by reason"] == len(STALL_REASONS)
    assert report["Destroy duration by outcome"] == 3 * 2  # p50/p90/p99 x two outcomes
    assert report["ProxmoxVM objects by phase"] == len(PHASES)
    _assert_png(out)


def test_reports_panels_without_data_for_an_unknown_job(
    prometheus: str, renderer: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "empty.png"
    argv = ["--prometheus", prometheus, "--minutes", "1", "--job", "no-such-job"]
    report = _render(renderer, [*argv, "--out", str(out)], capsys)

    with_data = {title for title, series in report.items() if series}
    # Only the counts that fall back to vector(0) answer for a job that does not exist.
    assert with_data == {"Destroys in flight", "Stalled destroys", "Oldest destroy in flight"}
    _assert_png(out)


def test_fails_when_prometheus_cannot_be_reached(
    renderer: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens there
    assert renderer.main(["--prometheus", url, "--out", str(tmp_path / "x.png")]) == 1
    assert "render_dashboard:" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
