"""The one classification of Proxmox VE failures that the rest of the operator relies on.

Every client call either returns a successful answer or raises a `ProxmoxError` whose `kind`
says what the caller may conclude. The rule that matters most: only a successful answer can
mean "absent". A transport failure, an auth failure or an unrecognised 5xx is `UNREACHABLE` or
`UNAUTHORIZED`/`FORBIDDEN`, never `ABSENT`, so a destroy never releases a VM it could not see.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping

import requests
from proxmoxer.core import ResourceException


class ErrorKind(enum.StrEnum):
    ABSENT = "Absent"
    """Proxmox answered that the addressed object does not exist. For a VM this comes from
    `Configuration file 'nodes/X/qemu-server/N.conf' does not exist` and only means "not on
    node X": the VM may live on another node. Use `find_vm` for cluster-wide absence."""
    LOCKED = "Locked"
    """A config lock (`VM is locked (backup)`) or the per-VM lock file held by a running task."""
    PROTECTED = "Protected"
    """`protection=1` refuses the removal."""
    CONFLICT = "Conflict"
    """The VM's state refuses the call now; a later retry may succeed (running, paused, digest)."""
    TAKEN = "Taken"
    """A create or clone found its VMID in use (`VM N already exists on node X`): another
    creator won the id; only another VMID helps."""
    UNREACHABLE = "Unreachable"
    """No usable answer: connection, TLS, timeouts, 5xx, or a reply we could not understand.
    After a read timeout a write may or may not have happened: re-read the state."""
    UNAUTHORIZED = "Unauthorized"
    """401: the token is wrong, expired or unknown."""
    FORBIDDEN = "Forbidden"
    """403: the token lacks a privilege on the path (`Permission check failed (/vms/N, PRIV)`).
    Never evidence of absence: a listing silently leaves out what the token may not audit."""
    REJECTED = "Rejected"
    """Other 4xx and 501: a bug on our side or bad input; retrying the same call will not help."""


class ProxmoxError(Exception):
    """Base of every error the Proxmox client raises. The message never contains the token."""

    kind: ErrorKind = ErrorKind.UNREACHABLE

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


class AbsentError(ProxmoxError):
    kind = ErrorKind.ABSENT

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        node: str | None = None,
        vmid: int | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.node = node
        self.vmid = vmid


class LockedError(ProxmoxError):
    kind = ErrorKind.LOCKED

    def __init__(
        self, message: str, *, status_code: int | None = None, lock: str | None = None
    ) -> None:
        super().__init__(message, status_code=status_code)
        # The config lock ("backup", "clone", ...); None when a task held the VM's lock file.
        self.lock = lock


class ProtectedError(ProxmoxError):
    kind = ErrorKind.PROTECTED


class ConflictError(ProxmoxError):
    kind = ErrorKind.CONFLICT


class TakenError(ProxmoxError):
    kind = ErrorKind.TAKEN


class UnreachableError(ProxmoxError):
    kind = ErrorKind.UNREACHABLE


class UnauthorizedError(ProxmoxError):
    kind = ErrorKind.UNAUTHORIZED


class ForbiddenError(UnauthorizedError):
    kind = ErrorKind.FORBIDDEN


class RejectedError(ProxmoxError):
    kind = ErrorKind.REJECTED

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        errors: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.errors: dict[str, str] = dict(errors or {})


# PVE's own wording (qemu-server, pve-guest-common, pve-ha-manager); first match wins, so the
# lock-file timeout inside "unable to create VM N - can't lock file ..." is LOCKED, not CONFLICT.
_MESSAGE_RULES: tuple[tuple[ErrorKind, re.Pattern[str]], ...] = (
    (
        ErrorKind.ABSENT,
        re.compile(
            r"Configuration file 'nodes/(?P<node>[^/']+)/qemu-server/(?P<vmid>\d+)\.conf'"
            r" does not exist"
        ),
    ),
    (ErrorKind.ABSENT, re.compile(r"no such resource 'vm:(?P<vmid>\d+)'")),
    (ErrorKind.ABSENT, re.compile(r"cannot delete service 'vm:(?P<vmid>\d+)', not HA managed")),
    (ErrorKind.PROTECTED, re.compile(r"protection mode enabled")),
    (ErrorKind.LOCKED, re.compile(r"VM is locked \((?P<lock>[^)]+)\)")),
    (ErrorKind.LOCKED, re.compile(r"can't lock file '[^']*' - got timeout")),
    # qemu-server create_vm/clone_vm: PVE::Cluster::check_vmid_unused, or the new config
    # file found in place ("unable to create VM N: config file already exists").
    (ErrorKind.TAKEN, re.compile(r"(VM|CT) \d+ already exists|config file already exists")),
    (
        ErrorKind.CONFLICT,
        re.compile(
            r"is running - destroy failed|checksum mismatch|already exists|VM is paused"
            r"|not running|already running|used in HA resources and purge parameter not set"
        ),
    ),
)


def match_message(text: str) -> tuple[ErrorKind, dict[str, str]] | None:
    """The kind a PVE error text denotes, with what it names (node, vmid, lock), if known."""
    for kind, pattern in _MESSAGE_RULES:
        found = pattern.search(text)
        if found:
            return kind, {k: v for k, v in found.groupdict().items() if v is not None}
    return None


def classify(
    exc: BaseException, *, request: str | None = None, secrets: Iterable[str] = ()
) -> ProxmoxError:
    """Map any exception raised while talking to Proxmox to a `ProxmoxError`.

    `request` ("POST /nodes/pve1/qemu/100/status/stop") prefixes the message; every string in
    `secrets` is blanked out of it.
    """
    if isinstance(exc, ProxmoxError):
        return exc
    prefix = f"{request}: " if request else ""
    hidden = [s for s in secrets if s]

    def text(message: str) -> str:
        for secret in hidden:
            message = message.replace(secret, "<redacted>")
        return prefix + message

    if isinstance(exc, ResourceException):
        return _classify_response(exc, text)
    if isinstance(exc, requests.exceptions.SSLError):
        return UnreachableError(text(f"TLS handshake or certificate verification failed: {exc}"))
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return UnreachableError(text(f"timed out connecting: {exc}"))
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return UnreachableError(
            text(f"timed out waiting for the answer (the call may have taken effect): {exc}")
        )
    if isinstance(exc, _OUR_REQUEST_BUGS):
        return RejectedError(text(f"request could not be sent ({type(exc).__name__}): {exc}"))
    if isinstance(exc, requests.exceptions.RequestException | OSError):
        return UnreachableError(text(f"connection failed: {_root_cause(exc)}"))
    # Anything else is unexpected; treating it as "retry later" is the safe direction.
    return UnreachableError(text(f"unexpected {type(exc).__name__}: {exc}"))


_CONNECTION_PREFIX = re.compile(r"^HTTPS?Connection(?:Pool)?\(host='([^']*)', port=(\d+)\): ")


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without the wrapper's repetitions
    ("HTTPSConnectionPool(...): Max retries exceeded ... (Caused by ...)"): it ends up in
    conditions and events, where a user reads it."""
    inner: BaseException = exc
    for _ in range(5):  # requests' error -> urllib3's MaxRetryError -> its reason
        reason = getattr(inner, "reason", None)
        if isinstance(reason, BaseException):
            inner = reason
        elif inner.args and isinstance(inner.args[0], BaseException):
            inner = inner.args[0]
        else:
            break
    return _CONNECTION_PREFIX.sub(r"\1:\2: ", str(inner)) or type(inner).__name__


_OUR_REQUEST_BUGS = (
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidHeader,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.URLRequired,
)


def _classify_response(exc: ResourceException, text: Callable[[str], str]) -> ProxmoxError:
    code = int(exc.status_code)
    reason = str(exc.content or exc.status_message or "").strip()
    errors = _errors_dict(exc.errors)
    detail = "".join(f"; {name}: {problem}" for name, problem in errors.items())
    message = text(f"{code} {reason}{detail}")

    if code == 403:
        return ForbiddenError(message, status_code=code)
    if code == 401:
        return UnauthorizedError(message, status_code=code)
    if code == 500 and (match := match_message(reason)):
        kind, named = match
        if kind is ErrorKind.ABSENT:
            vmid = named.get("vmid")
            return AbsentError(
                message,
                status_code=code,
                node=named.get("node"),
                vmid=int(vmid) if vmid else None,
            )
        if kind is ErrorKind.LOCKED:
            return LockedError(message, status_code=code, lock=named.get("lock"))
        if kind is ErrorKind.PROTECTED:
            return ProtectedError(message, status_code=code)
        if kind is ErrorKind.TAKEN:
            return TakenError(message, status_code=code)
        return ConflictError(message, status_code=code)
    # 408 and 429 come from proxies in front of PVE and clear by themselves.
    if code == 501 or (400 <= code < 500 and code not in (408, 429)):
        return RejectedError(message, status_code=code, errors=errors)
    return UnreachableError(message, status_code=code)


def _errors_dict(errors: object) -> dict[str, str]:
    """PVE's per-parameter errors; proxmoxer gives {"errors": b""} when the body is not JSON."""
    if not isinstance(errors, Mapping):
        return {}
    result: dict[str, str] = {}
    for name, problem in errors.items():
        if isinstance(problem, bytes):
            problem = problem.decode("utf-8", "replace")
        problem = str(problem).strip()
        if problem:
            result[str(name)] = problem[:300]
    return result
