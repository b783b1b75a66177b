"""A long-lived emulator keeps a bounded request log, so it does not slow down over time."""

from __future__ import annotations

import requests

from proxmox_vm_operator.sandbox.kubeapi import KubeAPIServer


def test_request_log_keeps_only_the_newest_requests_and_serving_goes_on() -> None:
    with KubeAPIServer(request_log_size=5) as server:
        for _ in range(40):
            reply = requests.get(f"{server.url}/api/v1/namespaces/default", timeout=5)
            assert reply.status_code == 200
        assert server.call(lambda api: len(api._requests)) <= 5
        assert server.call(lambda api: max(len(p._requests) for p in api._payloads)) <= 5


def test_request_log_is_unbounded_by_default_for_assertions() -> None:
    with KubeAPIServer() as server:
        for _ in range(12):
            requests.get(f"{server.url}/api/v1/namespaces/default", timeout=5)
        assert server.call(lambda api: len(api._requests)) >= 12
