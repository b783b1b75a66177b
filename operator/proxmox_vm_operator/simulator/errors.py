"""How the simulator fails, in the two ways Proxmox VE does: at once, or inside a task."""

from __future__ import annotations


class ApiError(Exception):
    """A synchronous API error: becomes an HTTP status with the message as reason phrase."""

    def __init__(
        self,
        status: int,
        message: str,
        errors: dict[str, str] | None = None,
        *,
        empty_body: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        # 401 and the proxy pseudo-codes 595/596 come without a JSON body on real PVE.
        self.empty_body = empty_body


class TaskError(Exception):
    """An error raised inside a worker: the HTTP call already returned 200 with a UPID."""


def param_error(errors: dict[str, str]) -> ApiError:
    return ApiError(400, "Parameter verification failed.", errors)


def config_missing(node: str, vmid: int) -> str:
    return f"Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"


def flock_timeout(vmid: int) -> str:
    return f"can't lock file '/var/lock/qemu-server/lock-{vmid}.conf' - got timeout"


def vm_locked(lock: str) -> str:
    return f"VM is locked ({lock})"
