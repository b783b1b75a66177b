"""The emulator as a process: prints its URL, writes a kubeconfig, stops cleanly on signals."""

from __future__ import annotations

import pathlib
import signal

import pytest
import requests
import yaml

from .helpers import KubeAPIProcess


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_process_serves_until_signalled(tmp_path: pathlib.Path, signum: int) -> None:
    server = KubeAPIProcess(tmp_path)
    kubeconfig = yaml.safe_load(server.kubeconfig.read_text())
    assert kubeconfig["clusters"][0]["cluster"]["server"] == server.url
    assert requests.get(f"{server.url}/api/v1/namespaces/default", timeout=5).status_code == 200
    with requests.get(f"{server.url}/api/v1/namespaces?watch=true", stream=True, timeout=5):
        returncode, stderr = server.stop(signum)  # with a watch still open
    assert (returncode, stderr) == (0, "")
