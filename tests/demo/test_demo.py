"""`proxmox-vm-operator demo` as a user runs it: a process of its own, read from its output.

Each run starts the whole sandbox (simulator, Kubernetes API emulator, operator, kubectl), so
these are the slowest tests here: a full story takes about 35 s, an interrupted one less.
"""

from __future__ import annotations

import os
import pathlib
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tests.e2e.harness import kubectl_binary

STORY_TIMEOUT = 110.0  # the demo bounds itself well below this; pytest's limit is 120 s
STOP_TIMEOUT = 30.0  # SIGINT/SIGTERM to exit: the operator gets 10 s, the emulator 5 s

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(autouse=True)
def _kubectl() -> None:
    kubectl_binary()  # skips without kubectl, fails in CI


class Demo:
    """The demo as a child process; its output is read line by line as it comes."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proxmox_vm_operator", "demo", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # a terminal of its own, as far as signals go
        )
        self.lines: list[str] = []
        self._fresh: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._fresh.put(line.rstrip("\n"))
        self._fresh.put(None)

    def wait_for_line(self, fragment: str, timeout: float) -> str:
        """The first line (from now on) that contains ``fragment``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._fresh.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line with {fragment!r} in {timeout:g} s") from None
            if line is None:
                raise AssertionError(f"the demo ended before a line with {fragment!r}")
            self.lines.append(line)
            if fragment in line:
                return line

    def finish(self, timeout: float) -> tuple[int, str]:
        """Wait for the exit; the exit code and everything the demo printed."""
        code = self.process.wait(timeout)
        while (line := self._fresh.get(timeout=10)) is not None:
            self.lines.append(line)
        return code, "\n".join(self.lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def run_demo() -> Iterator[type[Demo]]:
    started: list[Demo] = []

    class Tracked(Demo):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield Tracked
    for demo in started:
        demo.kill()


def sandbox_dir(output: str) -> pathlib.Path:
    found = re.search(r"sandbox files: (\S+)", output)
    assert found, output
    return pathlib.Path(found.group(1))


def processes_mentioning(text: str) -> list[str]:
    """Processes (not this one) whose command line or environment mentions ``text``."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if text.encode() in cmdline or text.encode() in environ:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{entry.name}: {command}")
    return found


def assert_nothing_left(output: str) -> None:
    workdir = sandbox_dir(output)
    assert not workdir.exists(), f"{workdir} was left behind"
    assert processes_mentioning(str(workdir)) == []
    metrics_port = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/", output)
    assert metrics_port, output
    assert processes_mentioning(f"--metrics-port\0{metrics_port.group(1)}\0") == []


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_the_demo_plays_every_act_checks_it_and_leaves_nothing_behind(
    run_demo: type[Demo],
) -> None:
    started = time.monotonic()
    demo = run_demo("--non-interactive")
    code, output = demo.finish(STORY_TIMEOUT)
    took = time.monotonic() - started

    assert code == 0, output
    assert "[FAILED]" not in output and "\x1b[" not in output
    assert re.search(r"all \d+ checks held", output), output
    act_1, act_2, act_3 = (
        output.split(title, 1)[1].split("\nAct ", 1)[0]
        for title in ("\nAct 1:", "\nAct 2:", "\nAct 3:")
    )
    # Act 1: one hard stop, no shutdown, gone in seconds.
    assert "operator -> Proxmox: POST /nodes/pve1/qemu/101/status/stop overrule-shutdown=1" in act_1
    assert "status/shutdown" not in act_1.replace("0 calls to status/shutdown", "")
    assert "proxmoxvm/frozen-installer is gone" in act_1
    deleted = 'proxmoxvm.proxmox.vmop.dev "frozen-installer" deleted'
    assert f"kubectl delete returned (exit 0): {deleted}" in act_1
    # Act 2: the shutdown, the deadline, the forced stop, reported.
    assert "POST /nodes/pve1/qemu/102/status/shutdown timeout=5" in act_2
    assert "event Warning ShutdownTimedOut" in act_2
    assert "POST /nodes/pve1/qemu/102/status/stop overrule-shutdown=1" in act_2
    assert "status.destroy.fallbackUsed: true" in act_2
    assert "proxmoxvm/batch-worker is gone" in act_2
    # Act 3: held and reported stalled while Proxmox is away, finished once it is back.
    assert "Proxmox VE API unreachable" in act_3
    assert "condition DeletionStalled=True (ProxmoxUnreachable)" in act_3
    assert "VM 103 still exists in Proxmox" in act_3
    assert 'proxmoxvm_destroys_stalled{reason="ProxmoxUnreachable"} 1' in act_3
    assert act_3.index("reachable again") < act_3.index("proxmoxvm/web-1 is gone")
    # The metrics, and where to go from here.
    assert 'proxmoxvm_destroy_duration_seconds{mode="Shutdown",outcome="deleted"}' in output
    assert "proxmoxvm_destroy_fallback_total 1" in output
    assert "Where to look next" in output and "kubectl describe proxmoxvm" in output
    assert took < 90, f"the demo took {took:.0f} s"
    assert_nothing_left(output)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
@pytest.mark.parametrize(
    ("signum", "to_group", "moment"),
    [
        # Ctrl-C: the terminal signals the whole foreground group, kubectl included.
        (signal.SIGINT, True, "event Normal ShuttingDown"),  # act 2, before the deadline
        # kill PID, or a pod's termination: the demo alone, with the simulator cut off.
        (signal.SIGTERM, False, "Proxmox VE API unreachable"),  # act 3
    ],
    ids=["Ctrl-C-in-act-2", "SIGTERM-in-act-3"],
)
def test_a_signal_mid_story_stops_everything_cleanly(
    run_demo: type[Demo], signum: signal.Signals, to_group: bool, moment: str
) -> None:
    demo = run_demo("--non-interactive")
    demo.wait_for_line(moment, timeout=STORY_TIMEOUT)

    if to_group:
        os.killpg(demo.process.pid, signum)
    else:
        demo.process.send_signal(signum)
    code, output = demo.finish(STOP_TIMEOUT)

    assert code == 128 + signum, output
    assert f"{signum.name}: stopping the sandbox" in output
    assert "checks held" not in output and "Where to look next" not in output
    assert "[FAILED]" not in output  # an interrupted act is not a failed one
    assert_nothing_left(output)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_keep_running_leaves_a_sandbox_the_printed_commands_work_in(
    run_demo: type[Demo],
) -> None:
    demo = run_demo("--non-interactive", "--keep-running")
    line = demo.wait_for_line("export KUBECONFIG=", timeout=STORY_TIMEOUT)
    env = {**os.environ, "KUBECONFIG": line.split("export KUBECONFIG=", 1)[1].strip()}
    samples = demo.wait_for_line("kubectl apply -f ", timeout=5).split("kubectl apply -f ")[1]

    def kubectl(*args: str) -> str:
        result = subprocess.run(
            [kubectl_binary(), *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    # The commands as printed: the sample VMs come back, in the kubeconfig's namespace.
    kubectl("apply", "-f", samples.split()[0])
    kubectl("wait", "--for=jsonpath={.status.phase}=Running", "proxmoxvm/web-1", "--timeout=30s")
    assert "web-1" in kubectl("get", "proxmoxvms")
    assert demo.process.poll() is None  # still up after the story

    os.killpg(demo.process.pid, signal.SIGINT)  # Ctrl-C: the way to end it
    code, output = demo.finish(STOP_TIMEOUT)
    assert code == 0, output  # the story held; ending the sandbox is no failure
    assert "checks held" in output
    assert_nothing_left(output)
