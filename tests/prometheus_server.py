"""A real Prometheus server (Debian's `prometheus`) on loopback, for tests that need one.

It scrapes the given targets every second and evaluates the given rule files every second, so
an expression or an alert can be watched through Prometheus's HTTP API. Without the binary the
tests skip, or fail when ``CI=true`` (CI installs the `prometheus` package).
"""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Self, TypeVar

import requests
import yaml

from .tools import require_tool

T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrometheusServer:
    """``start()``, then ``query()``, ``alerts()``, ``wait_for()``; ``stop()`` at the end."""

    def __init__(
        self,
        workdir: pathlib.Path,
        *,
        targets: Mapping[str, Sequence[str]],
        rule_files: Sequence[pathlib.Path] = (),
        honor_labels: bool = True,
    ) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self._process: subprocess.Popen[bytes] | None = None
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {
                    "job_name": job,
                    # As the ServiceMonitor does: our gauges carry their own `namespace`.
                    "honor_labels": honor_labels,
                    "static_configs": [{"targets": list(addresses)}],
                }
                for job, addresses in targets.items()
            ],
        }
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(config))

    def start(self, timeout: float = 30) -> Self:
        binary = require_tool("prometheus")
        storage = self.workdir / "data"
        storage.mkdir(exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={storage}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        self.wait_for(self._ready, timeout=timeout, what="Prometheus ready")
        return self

    def _ready(self) -> bool:
        if self._process is not None and self._process.poll() is not None:
            raise AssertionError(f"prometheus exited {self._process.returncode}:\n{self.log()}")
        try:
            return requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- the HTTP API -------------------------------------------------------------------------

    def _api(self, path: str, **params: str) -> Any:
        reply = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        body = reply.json()
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's vector: [{"metric": {...}, "value": [time, "text"]}]."""
        data = self._api("query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts pending or firing now: [{"labels", "annotations", "state", ...}]."""
        found: list[dict[str, Any]] = self._api("alerts")["alerts"]
        return found

    def rules(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self._api("rules")["groups"]
        return groups

    def targets_up(self) -> bool:
        active = self._api("targets")["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def wait_for(self, check: Callable[[], T], *, timeout: float, what: str) -> T:
        """Poll ``check`` until it returns something true; Prometheus has no event to await."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}\n"
                    f"--- prometheus log ---\n{self.log()[-4000:]}"
                )
            time.sleep(0.25)
