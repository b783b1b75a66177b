"""Every condition reason the operator writes, each with what it means.

The reasons are enums, so a reason the code sets is one the docs list: docs/api.md renders
these tables (``proxmox-vm-operator apidoc``), and the type checker refuses any other string.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class ReadyReason(StrEnum):
    """The Ready condition's reason while the object lives (Reconciling and Stalled carry
    the same one). While it is being deleted, Ready carries ``Deleting`` or the
    DeletionStalled reason instead."""

    RECONCILED = "Reconciled"
    PROVISIONING = "Provisioning"
    ADOPTING = "Adopting"
    UPDATING = "Updating"
    STARTING = "Starting"
    STOPPING = "Stopping"
    WAITING = "Waiting"
    INVALID_SPEC = "InvalidSpec"
    CONNECTION_UNAVAILABLE = "ConnectionUnavailable"
    PROXMOX_UNREACHABLE = "ProxmoxUnreachable"
    PROXMOX_UNAUTHORIZED = "ProxmoxUnauthorized"
    PROXMOX_ERROR = "ProxmoxError"
    NOT_OWNED = "NotOwned"
    VM_LOCKED = "VMLocked"
    VM_PAUSED = "VMPaused"
    SOURCE_NOT_FOUND = "SourceNotFound"
    CREATE_FAILED = "CreateFailed"
    CLONE_FAILED = "CloneFailed"
    START_FAILED = "StartFailed"
    STOP_FAILED = "StopFailed"
    DELETING = "Deleting"


READY_MEANINGS: Mapping[ReadyReason, str] = {
    ReadyReason.RECONCILED: "True: the VM exists, matches the spec and is in the desired "
    "power state. The message lists changes that wait for a reboot or cannot be made in place.",
    ReadyReason.PROVISIONING: "A VMID was chosen, or the VM is being created or cloned.",
    ReadyReason.ADOPTING: "`spec.adopt` is taking over an existing VM: the ownership tag is "
    "being added.",
    ReadyReason.UPDATING: "The VM's configuration is being changed to match the spec.",
    ReadyReason.STARTING: "The VM is being started (`spec.powerState: Running`).",
    ReadyReason.STOPPING: "The VM is being shut down (`spec.powerState: Stopped`).",
    ReadyReason.WAITING: "The node already runs `--max-tasks-per-node` tasks of the "
    "operator's, or the VM is still being made by a task; the next step waits for it.",
    ReadyReason.INVALID_SPEC: "The spec fails validation, or tries to change the VMID. "
    "Nothing is called until the object changes.",
    ReadyReason.CONNECTION_UNAVAILABLE: "The credentials Secret is missing, unreadable or "
    "invalid. Looked for again after 2, 4, 8 and 16 s, then every 30 s.",
    ReadyReason.PROXMOX_UNREACHABLE: "No usable answer from Proxmox VE (connection, TLS or "
    "server error). Retried with backoff.",
    ReadyReason.PROXMOX_UNAUTHORIZED: "Proxmox VE refuses the API token: a wrong token, or "
    "one without the privileges the call needs. Retried, but only a fix to the Secret or the "
    "token's permissions helps.",
    ReadyReason.PROXMOX_ERROR: "Proxmox VE answered a call with an error; the message has its "
    "answer. Retried; a call it rejects as invalid needs a change to the spec or in Proxmox VE.",
    ReadyReason.NOT_OWNED: "A VM with this VMID exists without this object's ownership tag, "
    "or belongs to another object. It is never touched; set `spec.adopt: true` to take over "
    "an untagged VM.",
    ReadyReason.VM_LOCKED: "The VM has a configuration lock (backup, clone, migrate). Retried.",
    ReadyReason.VM_PAUSED: "The VM is paused, which no `spec.powerState` asks for: resume it "
    "in Proxmox VE or change `spec.powerState`.",
    ReadyReason.SOURCE_NOT_FOUND: "The VM to clone (`spec.source.cloneFrom.vmid`) does not exist.",
    ReadyReason.CREATE_FAILED: "The create task ended with an error (the message has its "
    "exit status).",
    ReadyReason.CLONE_FAILED: "The clone task ended with an error.",
    ReadyReason.START_FAILED: "The start task ended with an error.",
    ReadyReason.STOP_FAILED: "The shutdown task ended with an error.",
    ReadyReason.DELETING: "The object is being deleted and the destroy moves (the Deleting "
    "condition names its step); a stalled destroy shows its DeletionStalled reason instead.",
}


class DeletingReason(StrEnum):
    """The Deleting condition's reason: the current step of the destroy."""

    STOPPING = "Stopping"
    SHUTTING_DOWN = "ShuttingDown"
    FORCING_STOP = "ForcingStop"
    DELETING_VM = "DeletingVM"
    VERIFYING_ABSENCE = "VerifyingAbsence"


DELETING_MEANINGS: Mapping[DeletingReason, str] = {
    DeletingReason.STOPPING: "The VM is being powered off with a stop (`Stop` mode, or "
    "through HA).",
    DeletingReason.SHUTTING_DOWN: "`Shutdown` mode: the guest was asked to shut down and has "
    "until `status.destroy.shutdownDeadline`.",
    DeletingReason.FORCING_STOP: "The graceful shutdown ran out of time: a forced stop "
    "(`status.destroy.fallbackUsed: true`).",
    DeletingReason.DELETING_VM: "The VM is being deleted (with `purge` and "
    "`destroyUnreferencedDisks` as set in `spec.destroy`).",
    DeletingReason.VERIFYING_ABSENCE: "The delete task ended: waiting for Proxmox VE to report "
    "the VMID gone before the finalizer is released.",
}


class StallReason(StrEnum):
    """Why a destroy cannot progress: the DeletionStalled condition's reason when True."""

    PROXMOX_UNREACHABLE = "ProxmoxUnreachable"
    PERMISSION_DENIED = "PermissionDenied"
    VM_LOCKED = "VMLocked"
    PROTECTED = "Protected"
    TASK_FAILED = "TaskFailed"
    TAKING_TOO_LONG = "TakingTooLong"


STALL_MEANINGS: Mapping[StallReason, str] = {
    StallReason.PROXMOX_UNREACHABLE: "Proxmox VE cannot be reached or refuses the token. "
    "The VM is never assumed gone: the finalizer stays and the operator keeps retrying.",
    StallReason.PERMISSION_DENIED: "Proxmox VE answered 403: the token lacks a privilege on the "
    "VM (the message names the path and privilege). Never taken for the VM being gone; grant "
    "the privilege and the destroy goes on.",
    StallReason.VM_LOCKED: "The VM has a configuration lock (backup, clone, migrate). The "
    "operator waits; it never uses `skiplock`.",
    StallReason.PROTECTED: "The VM has `protection=1`. Remove the protection in Proxmox VE.",
    StallReason.TASK_FAILED: "A stop or delete task ended with an error; it is retried.",
    StallReason.TAKING_TOO_LONG: "A step has run longer than `--stall-after` allows.",
}

# DeletionStalled's reason while the destroy moves.
DELETION_PROGRESSING = "Progressing"
