"""The e2e sandbox itself: kubectl, the CRD, the Secret, the ProxmoxVM helpers, bounded waits,
and the operator's process management (mostly with stand-ins; one smoke test of the real one)."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import signal
import socket
import sys
from collections.abc import Sequence

import pytest
import requests
import yaml

from .harness import (
    FINALIZER,
    Cluster,
    KubeAPIPool,
    KubeAPIProcess,
    KubectlError,
    OperatorLaunch,
    SandboxOptions,
    SimulatorProcess,
    StartError,
    WaitTimeout,
    dig,
    kubectl_binary,
    operator_command,
)

NO_OPERATOR = pytest.mark.sandbox(operator=False)
RELEASE = '{"metadata":{"finalizers":null}}'


def stand_in(code: str) -> list[str]:
    return [sys.executable, "-c", code]


SLEEPER = stand_in(
    "import os, sys, time\n"
    "print('stand-in', 'up, KUBECONFIG=' + os.environ['KUBECONFIG'], flush=True)\n"
    "print('stand-in', 'stderr', file=sys.stderr, flush=True)\n"
    "time.sleep(60)\n"
)


LISTENER = (
    "import socket, sys, time\n"
    "time.sleep(0.3)\n"
    "s = socket.create_server(('127.0.0.1', int(sys.argv[1])))\n"
    "print('listening on', sys.argv[1:], flush=True)\n"
    "time.sleep(60)\n"
)


def listener(launch: OperatorLaunch) -> Sequence[str]:
    """A stand-in that opens its liveness port after a moment, like a starting operator."""
    return [*stand_in(LISTENER), str(launch.liveness_port), launch.namespace]


def kopf_stand_in(launch: OperatorLaunch) -> Sequence[str]:
    """kopf running a stand-in for the operator's handlers, in the operator's process shape."""
    liveness = f"--liveness=http://127.0.0.1:{launch.liveness_port}/healthz"
    handlers = str(pathlib.Path(__file__).with_name("kopf_stand_in.py"))
    return [sys.executable, "-m", "kopf", "run", "--standalone", "-n", launch.namespace, liveness,
            handlers]  # fmt: skip


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ------------------------------------------------------------------ Kubernetes side


@NO_OPERATOR
def test_crd_is_established_and_get_shows_the_printer_columns(cluster: Cluster) -> None:
    waited = cluster.kubectl(
        "wait", "--for=condition=established", "crd/proxmoxvms.proxmox.vmop.dev", "--timeout=5s"
    )
    assert "condition met" in waited.stdout
    empty = cluster.kubectl("get", "pvm")
    assert f"No resources found in {cluster.namespace} namespace" in empty.stderr

    cluster.apply_vm("web-1", {"vmid": 120})
    status = {"status": {"vmid": 120, "phase": "Running", "powerState": "Running"}}
    cluster.kubectl(
        "patch", "pvm/web-1", "--subresource=status", "--type=merge", "-p", json.dumps(status)
    )
    header, row = cluster.kubectl("get", "pvm").stdout.splitlines()
    assert header.split() == ["NAME", "VMID", "NODE", "PHASE", "POWER", "AGE"]
    assert row.split()[:5] == ["web-1", "120", "pve1", "Running", "Running"]


@NO_OPERATOR
def test_secret_lets_a_client_reach_the_simulator(cluster: Cluster, tmp_path: pathlib.Path) -> None:
    secret = cluster.kubectl.json("get", "secret", cluster.secret_name)
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "endpoint": cluster.sim.endpoint,
        "tokenId": "root@pam!op",
        "tokenSecret": cluster.token_secret,
        "caCert": cluster.sim.ca_file.read_text(),
    }
    assert data["caCert"].startswith("-----BEGIN CERTIFICATE-----")

    ca = tmp_path / "ca-from-secret.pem"
    ca.write_text(data["caCert"])
    version = f"{data['endpoint']}/api2/json/version"

    def call(token_secret: str) -> requests.Response:
        auth = {"Authorization": f"PVEAPIToken={data['tokenId']}={token_secret}"}
        return requests.get(version, headers=auth, verify=str(ca), timeout=5)

    assert call(data["tokenSecret"]).status_code == 200
    refused = call("not-the-secret")
    assert refused.status_code == 401


@NO_OPERATOR
def test_applied_vm_reads_back_as_stored(cluster: Cluster) -> None:
    applied = cluster.apply_vm(
        "web-1", {"vmid": 120, "cores": 2}, labels={"app": "web"}, annotations={"a": "b"}
    )
    assert applied["metadata"]["namespace"] == cluster.namespace
    assert applied["spec"] == {
        "connectionRef": {"name": "pve"},
        "node": "pve1",
        "vmid": 120,
        "cores": 2,
    }

    stored = cluster.get_vm("web-1")
    assert stored is not None
    assert (stored["kind"], stored["metadata"]["uid"]) == ("ProxmoxVM", applied["metadata"]["uid"])
    assert stored["metadata"]["labels"] == {"app": "web"}
    assert stored["metadata"]["annotations"]["a"] == "b"
    assert stored["metadata"]["generation"] == 1

    cluster.apply_vm("web-1", {"vmid": 120, "cores": 4})
    changed = cluster.get_vm("web-1")
    assert dig(changed, "spec.cores") == 4 and dig(changed, "metadata.generation") == 2
    assert [vm["metadata"]["name"] for vm in cluster.list_vms()] == ["web-1"]


@NO_OPERATOR
def test_get_vm_is_none_for_a_missing_vm_and_kubectl_errors_carry_stderr(cluster: Cluster) -> None:
    assert cluster.get_vm("nothing-here") is None
    with pytest.raises(KubectlError, match=r'proxmoxvms.proxmox.vmop.dev "nothing-here" not found'):
        cluster.kubectl("get", "pvm", "nothing-here")
    unchecked = cluster.kubectl("get", "pvm", "nothing-here", check=False)
    assert unchecked.returncode == 1 and "NotFound" in unchecked.stderr


@NO_OPERATOR
def test_delete_of_a_vm_holding_the_destroy_finalizer_does_not_complete(cluster: Cluster) -> None:
    cluster.apply_vm("web-1", finalizers=[FINALIZER])
    deleted = cluster.delete_vm("web-1", wait=False)
    assert 'proxmoxvm.proxmox.vmop.dev "web-1" deleted' in deleted.stdout

    pending = cluster.get_vm("web-1")
    assert pending is not None
    assert pending["metadata"]["deletionTimestamp"]
    assert pending["metadata"]["finalizers"] == [FINALIZER]
    with pytest.raises(KubectlError, match="timed out waiting"):
        cluster.delete_vm("web-1", wait=True, timeout=1)  # nobody releases the finalizer

    cluster.kubectl("patch", "pvm/web-1", "--type=merge", "-p", RELEASE)
    cluster.wait_for(lambda: cluster.get_vm("web-1") is None, timeout=10, what="web-1 gone")


@NO_OPERATOR
def test_foreground_delete_waits_for_the_destroy_finalizer_too(cluster: Cluster) -> None:
    cluster.apply_vm("web-1", finalizers=[FINALIZER])
    cluster.delete_vm("web-1", cascade="foreground")
    pending = cluster.get_vm("web-1")
    assert pending is not None and pending["metadata"]["deletionTimestamp"]
    assert FINALIZER in pending["metadata"]["finalizers"]


@NO_OPERATOR
def test_events_for_lists_only_the_named_vms_events_oldest_first(cluster: Cluster) -> None:
    vm = cluster.apply_vm("web-1")

    def event(name: str, about: str, reason: str) -> dict[str, object]:
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name},
            "involvedObject": {
                "apiVersion": "proxmox.vmop.dev/v1alpha1",
                "kind": "ProxmoxVM",
                "name": about,
                "namespace": cluster.namespace,
                "uid": vm["metadata"]["uid"],
            },
            "reason": reason,
            "message": reason,
            "type": "Normal",
        }

    cluster.apply(event("zz-first", "web-1", "Created"))
    cluster.apply(event("aa-second", "web-1", "Started"), event("other", "web-2", "Created"))
    assert [e["reason"] for e in cluster.events_for("web-1")] == ["Created", "Started"]
    assert cluster.events_for("web-1", kind="Pod") == []


# --------------------------------------------------------------------------- waiting


@pytest.mark.sandbox(operator_command=SLEEPER)
def test_wait_for_returns_the_truthy_value_and_times_out_with_context(cluster: Cluster) -> None:
    cluster.apply_vm("web-1")
    assert cluster.wait_for(lambda: dig(cluster.get_vm("web-1"), "metadata.name")) == "web-1"
    cluster.wait_for(lambda: "stand-in up" in cluster.operator.log_text(), what="the stand-in")

    with pytest.raises(WaitTimeout) as timed_out:
        cluster.wait_for(lambda: dig(cluster.get_vm("web-1"), "status.phase"), timeout=0.3,
                         what="web-1 to be Running")  # fmt: skip
    message = str(timed_out.value)
    assert "timed out after 0.3 s waiting for web-1 to be Running; last value: None" in message
    assert "--- operator log (last 40 lines) ---" in message and "stand-in up" in message


@pytest.mark.sandbox(
    operator_command=stand_in(
        "import time; print('about', 'to crash', flush=True); time.sleep(0.5); raise SystemExit(3)"
    )
)
def test_wait_for_fails_at_once_when_the_operator_dies(cluster: Cluster) -> None:
    with pytest.raises(WaitTimeout, match=r"exited with code 3 while waiting for never") as died:
        cluster.wait_for(lambda: False, timeout=30, what="never")
    assert "about to crash" in str(died.value)


@pytest.mark.sandbox(operator_command=SLEEPER)
def test_wait_for_ignores_an_operator_the_test_stopped(cluster: Cluster) -> None:
    cluster.operator.kill()
    with pytest.raises(WaitTimeout, match=r"timed out after 0\.2 s"):
        cluster.wait_for(lambda: False, timeout=0.2, what="never")


# ----------------------------------------------------------------- operator process


def test_the_real_operator_is_ready_on_the_harness_ports_and_stops_cleanly(
    cluster: Cluster,
) -> None:
    operator = cluster.operator
    assert operator.running and operator.command[3:6] == ["run", "-n", cluster.namespace]
    health = requests.get(f"http://127.0.0.1:{operator.liveness_port}/healthz", timeout=5)
    assert health.status_code == 200
    metrics = requests.get(operator.metrics_url, timeout=5)
    assert "proxmoxvm_destroys_in_progress" in metrics.text
    cluster.apply_vm("web-1", {"powerState": "Stopped"})
    cluster.wait_for(lambda: FINALIZER in dig(cluster.get_vm("web-1"), "metadata.finalizers", []))
    assert operator.stop() == 0, operator.log_tail()


@pytest.mark.sandbox(operator_command=kopf_stand_in, wait_ready=True)
def test_a_kopf_operator_in_the_sandbox_reconciles_and_survives_a_crash(cluster: Cluster) -> None:
    cluster.apply_vm("web-1")
    cluster.wait_for(lambda: dig(cluster.get_vm("web-1"), "status.phase") == "Running")
    assert dig(cluster.get_vm("web-1"), "metadata.finalizers") == [FINALIZER]

    cluster.operator.restart(crash=True)
    cluster.delete_vm("web-1", wait=True, timeout=30)  # the restarted operator releases it
    assert cluster.get_vm("web-1") is None
    assert [e["reason"] for e in cluster.events_for("web-1")] == ["Destroyed"]
    assert cluster.operator.stop() == 0, cluster.operator.log_tail()


@pytest.mark.sandbox(operator_command=SLEEPER)
def test_operator_process_is_killed_restarted_and_logged(cluster: Cluster) -> None:
    operator = cluster.operator

    def runs_logged(count: int) -> None:
        log = operator.log_text
        cluster.wait_for(lambda: log().count("stand-in stderr") == count, what=f"run {count}")

    first = operator.pid
    assert operator.running and first is not None
    runs_logged(1)  # stdout and stderr both land in the log
    assert f"stand-in up, KUBECONFIG={cluster.kubeconfig}" in operator.log_text()

    assert operator.kill() == -signal.SIGKILL
    assert not operator.running and not pid_exists(first)
    operator.start()
    second = operator.pid
    assert operator.running and second not in (None, first)
    runs_logged(2)

    operator.restart()
    assert operator.running and operator.pid not in (first, second)
    runs_logged(3)
    assert operator.stop() == -signal.SIGTERM
    assert not operator.running

    notes = [line for line in operator.log_text().splitlines() if "--- sandbox" in line]
    assert [line.split(":")[1] for line in notes] == [
        " start #1", " killed, exit code -9", " start #2", " stopped, exit code -15",
        " start #3", " stopped, exit code -15",
    ]  # fmt: skip


@pytest.mark.sandbox(
    operator_command=stand_in(
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring', 'SIGTERM', flush=True)\n"
        "time.sleep(60)\n"
    )
)
def test_stop_kills_an_operator_that_ignores_sigterm(cluster: Cluster) -> None:
    cluster.wait_for(lambda: "ignoring SIGTERM" in cluster.operator.log_text())
    assert cluster.operator.stop(timeout=0.5) == -signal.SIGKILL


@pytest.mark.sandbox(operator=False, operator_command=listener, wait_ready=True)
def test_start_waits_for_the_liveness_port(cluster: Cluster) -> None:
    assert not cluster.operator.running
    cluster.operator.start()
    expected = f"listening on ['{cluster.operator.liveness_port}', '{cluster.namespace}']"
    assert expected in cluster.operator.log_text()  # start() returned after it listened


@pytest.mark.sandbox(
    operator=False,
    operator_command=stand_in("print('boom:', 'bad flag', flush=True); raise SystemExit(2)"),
    wait_ready=True,
)
def test_start_reports_an_operator_that_exits_while_starting(cluster: Cluster) -> None:
    with pytest.raises(StartError, match=r"(?s)exited with code 2 while starting.*boom"):
        cluster.operator.start()
    assert not cluster.operator.running and cluster.operator.died() is None


def test_real_operator_command_watches_only_the_test_namespace(tmp_path: pathlib.Path) -> None:
    launch = OperatorLaunch("ns-1", tmp_path / "kubeconfig", metrics_port=9001, liveness_port=9002)
    assert operator_command()(launch) == [
        sys.executable, "-m", "proxmox_vm_operator", "run", "-n", "ns-1", "--standalone",
        "--metrics-port", "9001", "--liveness-port", "9002", "--bind-address", "127.0.0.1",
        "--stall-after", "30",
    ]  # fmt: skip
    clusterwide = operator_command(stall_after=2.5, clusterwide=True, extra_args=["--x", "1"])
    assert clusterwide(launch)[4:6] == ["-A", "--standalone"]
    assert clusterwide(launch)[-4:] == ["--stall-after", "2.5", "--x", "1"]


# ----------------------------------------------------------------------- lifecycle


def test_teardown_stops_operator_emulator_and_simulator(
    kube_api: KubeAPIProcess, tmp_path: pathlib.Path
) -> None:
    options = SandboxOptions(operator_command=SLEEPER)
    with Cluster(kube_api, tmp_path, options) as sandbox:
        operator, emulator = sandbox.operator.pid, kube_api.process
        sandbox.apply_vm("web-1", finalizers=[FINALIZER])
        endpoint = sandbox.sim.endpoint
    assert operator is not None and not pid_exists(operator)
    assert emulator is not None and emulator.returncode == 0 and not kube_api.running
    with pytest.raises(requests.ConnectionError):
        requests.get(endpoint, timeout=2, verify=False)


@pytest.mark.sandbox(time_scale=0, nodes=["pve1"], operator=False)
def test_marker_options_reach_the_simulator(cluster: Cluster) -> None:
    assert cluster.options.time_scale == 0
    assert cluster.sim.clock.scale == 0
    assert list(cluster.sim.cluster.nodes) == ["pve1"]


@NO_OPERATOR
@pytest.mark.parametrize("cluster", [{"time_scale": 5}], indirect=True)
def test_indirect_parameters_override_markers(cluster: Cluster) -> None:
    assert cluster.sim.clock.scale == 5 and not cluster.options.operator


def test_each_emulator_from_the_pool_is_fresh_and_ready(
    kube_api_pool: KubeAPIPool, tmp_path: pathlib.Path
) -> None:
    first, second = kube_api_pool.take(), kube_api_pool.take()
    try:
        assert first.url != second.url
        one, two = first.kubectl(tmp_path / "one"), second.kubectl(tmp_path / "two")
        vm = {"apiVersion": "proxmox.vmop.dev/v1alpha1", "kind": "ProxmoxVM",
              "metadata": {"name": "only-here"}, "spec": {"node": "pve1"}}  # fmt: skip
        one("apply", "-f", "-", input=json.dumps(vm))
        assert [item["metadata"]["name"] for item in one.json("get", "pvm")["items"]] == [
            "only-here"
        ]
        assert two.json("get", "pvm")["items"] == []
    finally:
        first.stop()
        second.stop()


@pytest.mark.sandbox(operator=False, namespace="lab")
def test_kubeconfig_defaults_to_the_sandbox_namespace(cluster: Cluster) -> None:
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    assert config["contexts"][0]["context"]["namespace"] == "lab" == cluster.namespace
    assert config["clusters"][0]["cluster"]["server"] == cluster.api.url
    assert cluster.kubectl("get", "secret", "pve", "-o", "name").stdout.strip() == "secret/pve"
    assert cluster.apply_vm("web-1")["metadata"]["namespace"] == "lab"


def test_missing_kubectl_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="kubectl is required in CI"):
        kubectl_binary()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        kubectl_binary()


def test_a_simulator_whose_port_was_taken_meanwhile_starts_on_new_ones(
    tmp_path: pathlib.Path,
) -> None:
    """Ports are free when chosen, but another process may bind one first."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    try:
        simulator = SimulatorProcess(
            tmp_path, nodes=["pve1"], tokens={"root@pam!op": "s3cret"}, time_scale=1
        )
        taken = squatter.getsockname()[1]
        simulator.control_port = taken  # as if someone took it between choice and bind
        simulator.command[simulator.command.index("--control-port") + 1] = str(taken)
        simulator.start()
        try:
            assert simulator.control_port != taken
            assert simulator.running
            assert "Address already in use" in simulator.log_text()
        finally:
            simulator.stop()
    finally:
        squatter.close()
