"""Child processes of the sandbox: each in a process group of its own, stopped as a group.

Their own group keeps a Ctrl-C on the terminal from reaching them before the demo (or a test's
teardown) has decided the order they stop in: the operator first, so it never sees its API
vanish. On Linux they also die with the thread that started them if it is killed outright
(SIGKILL, an OOM kill, pytest-timeout): the launcher sets PR_SET_PDEATHSIG (1) to SIGKILL (9),
which survives the exec; the parent pid check closes the race with a parent that died before
prctl ran. A plain ``preexec_fn`` would do the same, but it is unsafe in a process with
threads, and the in-process simulator runs in one.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence

_DIE_WITH_PARENT = (
    "import ctypes, os, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, 9)\n"
    "os.getppid() == int(sys.argv[1]) or os._exit(70)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


def spawn(
    command: Sequence[str],
    *,
    log: pathlib.Path,
    stdout: pathlib.Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: pathlib.Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a new session; stderr (and stdout unless given) go to ``log``.

    ``log`` is appended to, so a restarted child keeps its earlier runs' output; ``stdout``
    is truncated (it carries one answer, such as the emulator's URL).
    """
    argv = list(command)
    if sys.platform == "linux":
        argv = [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *argv]
    with contextlib.ExitStack() as files:
        err = files.enter_context(log.open("ab"))
        out = files.enter_context(stdout.open("wb")) if stdout else err
        return subprocess.Popen(  # noqa: S603 - an argument list, no shell
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=None if env is None else dict(env),
            cwd=cwd,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM to the group, then SIGKILL once ``timeout`` has passed; the exit code."""
    if process.poll() is None:
        _signal_group(process, signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)
    return process.wait()


def kill(process: subprocess.Popen[bytes]) -> int:
    """SIGKILL to the group at once (a crash, as when a node dies); the exit code."""
    if process.poll() is None:
        _signal_group(process, signal.SIGKILL)
    return process.wait()


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    # The group is the child's (start_new_session) for as long as its leader has not been
    # reaped, which poll() and wait() are the only ones to do.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports that were free a moment ago (all held open while choosing)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]


def port_open(port: int) -> bool:
    """Whether something accepts connections on the loopback ``port`` right now."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False
