"""classify() maps real proxmoxer and requests exceptions onto the error kinds."""

from __future__ import annotations

import socket

import pytest
import requests
from proxmoxer.core import ResourceException

from proxmox_vm_operator.proxmox import (
    AbsentError,
    ErrorKind,
    LockedError,
    RejectedError,
    UnreachableError,
    classify,
    match_message,
)


def pve_error(code: int, message: str, errors: object = None) -> ResourceException:
    """What proxmoxer raises: the reason phrase (PVE's message) lands in `content`."""
    phrases = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        500: "Internal Server Error",
    }
    return ResourceException(code, phrases.get(code, "Error"), message, errors=errors)


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist", ErrorKind.ABSENT),
        ("no such resource 'vm:100'", ErrorKind.ABSENT),
        ("cannot delete service 'vm:100', not HA managed!", ErrorKind.ABSENT),
        ("VM is locked (backup)", ErrorKind.LOCKED),
        ("can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout", ErrorKind.LOCKED),
        (
            "unable to create VM 100 - can't lock file '/var/lock/qemu-server/lock-100.conf'"
            " - got timeout",
            ErrorKind.LOCKED,
        ),
        ("can't remove VM 100 - protection mode enabled", ErrorKind.PROTECTED),
        ("VM 100 is running - destroy failed", ErrorKind.CONFLICT),
        ("checksum mismatch (file change by other user?)", ErrorKind.CONFLICT),
        ("unable to create VM 100 - VM 100 already exists on node 'pve1'", ErrorKind.TAKEN),
        ("unable to create VM 101: config file already exists", ErrorKind.TAKEN),
        ("VM is paused - cannot shutdown", ErrorKind.CONFLICT),
        ("VM 100 not running", ErrorKind.CONFLICT),
        ("cluster not ready - no quorum?", ErrorKind.UNREACHABLE),
        ("hostname lookup 'pve9' failed - failed to get address info", ErrorKind.UNREACHABLE),
        (
            "unable to remove VM 100 - used in HA resources and purge parameter not set.",
            ErrorKind.CONFLICT,
        ),
    ],
)
def test_a_500_is_classified_by_its_message(message: str, kind: ErrorKind) -> None:
    error = classify(pve_error(500, message))
    assert error.kind is kind
    assert error.status_code == 500
    assert message in str(error)


def test_absent_names_the_node_it_is_absent_from() -> None:
    error = classify(
        pve_error(500, "Configuration file 'nodes/pve2/qemu-server/1201.conf' does not exist")
    )
    assert isinstance(error, AbsentError)
    assert (error.node, error.vmid) == ("pve2", 1201)


def test_locked_carries_the_lock_name_or_none_for_the_lock_file() -> None:
    config_lock = classify(pve_error(500, "VM is locked (backup)"))
    file_lock = classify(pve_error(500, "can't lock file '/var/lock/x.conf' - got timeout"))
    assert isinstance(config_lock, LockedError) and config_lock.lock == "backup"
    assert isinstance(file_lock, LockedError) and file_lock.lock is None


@pytest.mark.parametrize("code", [401, 403])
@pytest.mark.parametrize(
    "message",
    [
        "authentication failure",
        "Permission check failed (/vms/100, VM.PowerMgmt)",
        # Even when the text would otherwise mean absent: an auth failure proves nothing.
        "Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist",
    ],
)
def test_auth_failures_are_unauthorized_or_forbidden_never_absent(code: int, message: str) -> None:
    expected = ErrorKind.FORBIDDEN if code == 403 else ErrorKind.UNAUTHORIZED
    assert classify(pve_error(code, message)).kind is expected


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (502, "Bad Gateway"),
        (503, "Service Unavailable"),
        (595, "No route to host"),
        (596, "Connection timed out"),
        (599, ""),
        (408, "Request Timeout"),
        (429, "Too Many Requests"),
    ],
)
def test_other_server_errors_and_transient_proxy_codes_are_unreachable(
    code: int, message: str
) -> None:
    error = classify(ResourceException(code, None, message, errors={"errors": b""}))
    assert error.kind is ErrorKind.UNREACHABLE
    assert error.status_code == code


def test_a_message_only_counts_on_a_500() -> None:
    # A 502 from a proxy quoting a PVE text is still just an unreachable backend.
    message = "Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist"
    error = classify(ResourceException(502, "Bad Gateway", message))
    assert error.kind is ErrorKind.UNREACHABLE


def test_parameter_errors_are_rejected_with_the_errors_dict() -> None:
    exc = pve_error(
        400,
        "Parameter verification failed.",
        errors={"full": "type check ('boolean') failed - got 'True'"},
    )
    error = classify(exc, request="POST /nodes/pve1/qemu/9000/clone")
    assert isinstance(error, RejectedError)
    assert error.errors == {"full": "type check ('boolean') failed - got 'True'"}
    assert str(error) == (
        "POST /nodes/pve1/qemu/9000/clone: 400 Parameter verification failed.; "
        "full: type check ('boolean') failed - got 'True'"
    )


@pytest.mark.parametrize(
    ("code", "message"),
    [(501, "Method 'POST /nodes/pve1/qemu/100/status/foo' not implemented"), (404, "Not Found")],
)
def test_not_implemented_and_other_client_errors_are_rejected(code: int, message: str) -> None:
    assert classify(pve_error(code, message)).kind is ErrorKind.REJECTED


def test_a_non_json_error_body_does_not_become_an_errors_entry() -> None:
    error = classify(pve_error(400, "Bad Request", errors={"errors": b""}))
    assert isinstance(error, RejectedError)
    assert error.errors == {}


@pytest.mark.parametrize(
    "exc",
    [
        requests.exceptions.ConnectionError("Connection refused"),
        requests.exceptions.SSLError("certificate verify failed"),
        requests.exceptions.ConnectTimeout("connect timed out"),
        requests.exceptions.ReadTimeout("read timed out"),
        requests.exceptions.ChunkedEncodingError("connection broken"),
        requests.exceptions.ContentDecodingError("bad gzip"),
        requests.exceptions.TooManyRedirects("redirect loop"),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_transport_failures_are_unreachable(exc: Exception) -> None:
    error = classify(exc, request="GET /cluster/resources")
    assert isinstance(error, UnreachableError)
    assert error.status_code is None
    assert str(error).startswith("GET /cluster/resources: ")


def test_a_read_timeout_warns_that_the_call_may_have_happened() -> None:
    error = classify(requests.exceptions.ReadTimeout("read timed out"))
    assert "may have taken effect" in str(error)


def test_a_tls_failure_says_so() -> None:
    assert "TLS" in str(classify(requests.exceptions.SSLError("certificate verify failed")))


def test_a_request_we_could_not_even_send_is_rejected() -> None:
    exc = requests.exceptions.InvalidHeader("Invalid return character in header value")
    assert classify(exc).kind is ErrorKind.REJECTED


def test_an_unexpected_exception_is_unreachable_not_absent() -> None:
    error = classify(RuntimeError("boom"))
    assert error.kind is ErrorKind.UNREACHABLE
    assert "RuntimeError: boom" in str(error)


def test_secrets_are_blanked_out_of_messages() -> None:
    exc = requests.exceptions.InvalidHeader("header value 'PVEAPIToken=root@pam!ci=s3cr3t-value'")
    error = classify(exc, secrets=["s3cr3t-value"])
    assert "s3cr3t-value" not in str(error)
    assert "s3cr3t-value" not in repr(error)
    assert "<redacted>" in str(error)


def test_an_already_classified_error_is_returned_unchanged() -> None:
    error = LockedError("locked", lock="backup")
    assert classify(error) is error


@pytest.mark.parametrize(
    ("exitstatus", "cause", "lock"),
    [
        ("VM is locked (backup)", ErrorKind.LOCKED, "backup"),
        (
            "can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout",
            ErrorKind.LOCKED,
            None,
        ),
        ("VM 100 already running", ErrorKind.CONFLICT, None),
        ("VM quit/powerdown failed - got timeout", None, None),
        ("received interrupt", None, None),
    ],
)
def test_a_failed_task_s_exit_status_tells_whether_a_lock_was_the_cause(
    exitstatus: str, cause: ErrorKind | None, lock: str | None
) -> None:
    """The exit status carries the same texts as a refused call; what it names is kept."""
    matched = match_message(exitstatus)
    assert (matched[0] if matched else None) is cause
    assert (matched[1].get("lock") if matched else None) == lock


def test_a_refused_connection_reads_as_its_cause_naming_the_endpoint() -> None:
    """The message lands in conditions and events: the root cause and the host, without
    urllib3's wrapper text repeated around it."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again below: nothing listens there
    try:
        requests.get(f"https://127.0.0.1:{port}/api2/json/version", timeout=5)
    except requests.ConnectionError as exc:
        error = classify(exc, request="GET /version")
    else:
        raise AssertionError("a connection to a closed port succeeded")
    assert isinstance(error, UnreachableError)
    assert error.message == (
        f"GET /version: connection failed: 127.0.0.1:{port}: Failed to establish a new "
        "connection: [Errno 111] Connection refused"
    )
    assert "Max retries" not in error.message and "Caused by" not in error.message
