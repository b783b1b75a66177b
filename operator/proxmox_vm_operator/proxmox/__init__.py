"""Proxmox VE access: connection settings, typed async calls and one error classification.

This package is the only one in the project that imports proxmoxer or requests.
"""

from .client import ApiCall, ApiCallObserver, ParamValue, ProxmoxClient, encode_params
from .errors import (
    AbsentError,
    ConflictError,
    ErrorKind,
    ForbiddenError,
    LockedError,
    ProtectedError,
    ProxmoxError,
    RejectedError,
    TakenError,
    UnauthorizedError,
    UnreachableError,
    classify,
    match_message,
)
from .models import (
    ActiveTask,
    ProxmoxVersion,
    TaskStatus,
    Upid,
    VmConfig,
    VmResource,
    VmStatus,
    parse_tags,
    parse_upid,
)
from .settings import ConnectionSettings, InvalidConnectionSettings

__all__ = [
    "AbsentError",
    "ActiveTask",
    "ApiCall",
    "ApiCallObserver",
    "ConflictError",
    "ConnectionSettings",
    "ErrorKind",
    "ForbiddenError",
    "InvalidConnectionSettings",
    "LockedError",
    "ParamValue",
    "ProtectedError",
    "ProxmoxClient",
    "ProxmoxError",
    "ProxmoxVersion",
    "RejectedError",
    "TakenError",
    "TaskStatus",
    "UnauthorizedError",
    "UnreachableError",
    "Upid",
    "VmConfig",
    "VmResource",
    "VmStatus",
    "classify",
    "encode_params",
    "match_message",
    "parse_tags",
    "parse_upid",
]
