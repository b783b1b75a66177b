"""End-to-end tests: the operator as a process, against the Kubernetes API emulator and the
Proxmox VE simulator, driven with the real kubectl. Nothing here needs a network or Docker.

A test asks for ``cluster`` and gets a fresh sandbox (a `harness.Cluster`)::

    def test_deleting_a_running_vm_destroys_it(cluster: Cluster) -> None:
        cluster.sim.add_vm(120, running=True)                 # the in-process Simulator
        cluster.apply_vm("web-1", {"vmid": 120, "adopt": True})
        cluster.wait_for(lambda: dig(cluster.get_vm("web-1"), "status.phase") == "Running",
                         what="web-1 running")
        cluster.delete_vm("web-1")                            # kubectl delete --wait=false
        cluster.wait_for(lambda: cluster.get_vm("web-1") is None, what="web-1 released")
        assert not cluster.sim.vm_exists(120)

What a test gets:

* ``cluster.sim``: a `Simulator(nodes=["pve1", "pve2"], time_scale=20)` accepting one token,
  ``cluster.token_id`` (``root@pam!op``) = ``cluster.token_secret`` (random per test).
* ``cluster.api``: a Kubernetes API emulator process of its own (``cluster.api.url``), the
  ProxmoxVM CRD established; ``cluster.namespace`` (``e2e``) holds the Secret ``pve``
  (``cluster.secret_name``) with endpoint, tokenId, tokenSecret and caCert (the simulator's
  CA, PEM). ``cluster.kubeconfig`` has this namespace as its default, so
  ``cluster.kubectl(...)`` and the operator work in it without ``-n``.
* ``cluster.kubectl(*args, input=None, check=True, timeout=30) -> CompletedProcess[str]``:
  the real kubectl with the sandbox kubeconfig and a per-test ``--cache-dir``; raises
  `KubectlError` (with stdout and stderr) on a non-zero exit unless ``check=False``.
  ``cluster.kubectl.json(*args, input=None)`` adds ``-o json`` and parses the output.
* ProxmoxVM helpers: ``vm_manifest(name, spec=None, *, finalizers=(), annotations=None,
  labels=None) -> dict`` (connectionRef to the Secret, node pve1; ``spec`` adds or overrides
  keys), ``apply_vm(...)`` (the same arguments; kubectl-applies it, returns the stored
  object), ``apply(*manifests) -> list[dict]``, ``get_vm(name) -> dict | None`` (None when
  NotFound), ``list_vms()``, ``delete_vm(name, *, wait=False, cascade=None, timeout=60)``,
  ``events_for(name, kind="ProxmoxVM") -> list[dict]`` (oldest first).
* ``cluster.wait_for(predicate, *, timeout=30, what=None, interval=0.2)``: polls until the
  predicate returns something truthy and returns it; fails with `WaitTimeout` (an
  AssertionError) on timeout, or at once if the operator exits while it should be running,
  with the last value and the operator log tail. ``harness.dig(obj, "status.destroy.step")``
  reads nested fields without KeyErrors.
* ``cluster.operator``: the operator process (`OperatorProcess`), started before the test
  with ``python -m proxmox_vm_operator run -n NS --standalone --metrics-port P
  --liveness-port P --bind-address 127.0.0.1 --stall-after 30`` and KUBECONFIG set; ready
  once the liveness port accepts connections (kopf may still be discovering resources then).
  ``start()``, ``stop(timeout=None) -> exit code`` (SIGTERM, SIGKILL
  after 15 s: -9 means it did not stop), ``kill() -> exit code`` (SIGKILL: a crash),
  ``restart(crash=False)``, ``wait(timeout)``, ``running``, ``pid``, ``returncode``,
  ``metrics_url``, ``metrics_port``, ``liveness_port`` (fresh ports on every start),
  ``log_text()`` (all runs, each after a ``--- sandbox:`` line), ``log_tail(lines=40)``,
  ``scrape()`` (its proxmoxvm_* metric samples).

Options, with ``@pytest.mark.sandbox(...)`` on a test, class or module (``pytestmark``), or
as an indirect parameter (``@pytest.mark.parametrize("cluster", [{"time_scale": 0}],
indirect=True)``); the closest wins: ``time_scale=20``, ``nodes=("pve1", "pve2")``,
``simulator={...}`` (more `Simulator` arguments: ``default_guest``, ``timings``, ``seed``),
``namespace="e2e"``, ``operator=True`` (False: start it yourself), ``operator_args=()``
(appended to the real command), ``operator_command=None`` (a list, or a function of
`OperatorLaunch` returning one, replacing the real operator; not waited for unless
``wait_ready=True``), ``operator_env={}``, ``stall_after=30``, ``clusterwide=False`` (``-A``
instead of ``-n NS``), ``simulator_process=False`` (the simulator as its own process, steered
through its HTTP control endpoint: ``cluster.sim`` then has the same control and inspection
methods), ``watch_lag=0`` (seconds: a dedicated emulator delivering every watch event that
late, as a slow API server).

Isolation and cost: every test gets its own emulator process, simulator, Secret and operator.
Emulators come from a session-wide pool that keeps the next one starting (process, CRD,
established: about 0.75 s) while a test runs, so a test's set-up is mostly the operator's
start. (A long-lived emulator would not do: it gets slower with every request it has served.)
Teardown stops the operator, then the emulator, then the simulator. Children die with pytest
even when it is killed outright (PR_SET_PDEATHSIG, Linux): start the operator from the test's
own thread, not from a thread that ends before it. A failed test's report has the
ProxmoxVMs, the events and the operator log; a test during which the emulator itself failed
on a request errors at teardown.

The processes, kubectl and the Secret are `proxmox_vm_operator.sandbox.stack`'s, the same
code ``proxmox-vm-operator demo`` runs on; harness.py adds what only tests need.

kubectl must be on PATH: without it these tests skip, or fail when ``CI=true``.
"""

from __future__ import annotations

import pathlib
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from .harness import Cluster, KubeAPIPool, KubeAPIProcess, SandboxOptions, kubectl_binary

CLUSTER = pytest.StashKey[Cluster]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "sandbox(**options): options for the e2e `cluster` fixture (see tests/e2e/conftest.py)",
    )


@pytest.fixture(scope="session")
def kube_api_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPIPool]:
    pool = KubeAPIPool(tmp_path_factory.mktemp("kubeapi"), kubectl_binary())
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def kube_api(
    request: pytest.FixtureRequest, kube_api_pool: KubeAPIPool, tmp_path: pathlib.Path
) -> Iterator[KubeAPIProcess]:
    """A fresh Kubernetes API emulator process, with the ProxmoxVM CRD established."""
    lag = sandbox_options(request).watch_lag
    if lag:  # not one of the pool's: it serves with a lagging watch
        api = KubeAPIProcess(tmp_path / "kubeapi", kubectl_binary(), watch_lag=lag).start()
    else:
        api = kube_api_pool.take()
    try:
        yield api
    finally:
        api.stop()


def sandbox_options(request: pytest.FixtureRequest) -> SandboxOptions:
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("sandbox"))):  # farthest first
        if marker.args:
            raise TypeError("@pytest.mark.sandbox takes keyword arguments only")
        options.update(marker.kwargs)
    options.update(getattr(request, "param", None) or {})
    return SandboxOptions(**options)


@pytest.fixture
def cluster(
    request: pytest.FixtureRequest, kube_api: KubeAPIProcess, tmp_path: pathlib.Path
) -> Iterator[Cluster]:
    """A fresh sandbox for one test; see the module docstring."""
    with Cluster(kube_api, tmp_path, sandbox_options(request)) as sandbox:
        request.node.stash[CLUSTER] = sandbox
        yield sandbox
    if failures := sandbox.emulator_failures():
        pytest.fail(f"the Kubernetes API emulator failed on a request:\n{failures}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    sandbox = item.stash.get(CLUSTER, None)
    if sandbox is not None and report.when == "call" and report.failed:
        try:
            for title, text in sandbox.debug_report():
                report.sections.append((title, text))
        except Exception as exc:  # the report must not hide the test's own failure
            report.sections.append(("sandbox", f"could not collect the sandbox state: {exc!r}"))
    return report
