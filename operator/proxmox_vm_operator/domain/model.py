"""The ProxmoxVM resource: spec and status, as pydantic models.

These models are the single source of the CRD's OpenAPI schema (``proxmox-vm-operator crd``),
so every field carries the description ``kubectl explain`` shows, its default and its bounds.
"""

from __future__ import annotations

import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

GROUP = "proxmox.vmop.dev"
VERSION = "v1alpha1"
KIND = "ProxmoxVM"
PLURAL = "proxmoxvms"
SINGULAR = "proxmoxvm"
SHORT_NAMES = ("pvm",)
CATEGORIES = ("proxmox",)
FINALIZER = f"{GROUP}/destroy"
DESTROY_MODE_ANNOTATION = f"{GROUP}/destroy-mode"
FORCE_RELEASE_ANNOTATION = f"{GROUP}/force-release"
OWNERSHIP_TAG_PREFIX = "vmop-"

VMID_MIN = 100
VMID_MAX = 999_999_999
DNS_NAME = r"^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)*$"
TAG = r"^[a-z0-9_][a-z0-9_+.-]*$"

VMID = Annotated[int, Field(ge=VMID_MIN, le=VMID_MAX)]
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # RFC 3339 in UTC, as Kubernetes writes timestamps
PRECISE_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime(TIME_FORMAT)


def format_precise_time(moment: datetime.datetime) -> str:
    """RFC 3339 with microseconds, for deadlines: whole seconds would cut up to one off."""
    return moment.astimezone(datetime.UTC).strftime(PRECISE_TIME_FORMAT)


def parse_time(text: str) -> datetime.datetime:
    """Either format above (RFC 3339 in UTC, with or without fractional seconds)."""
    for layout in (TIME_FORMAT, PRECISE_TIME_FORMAT):
        try:
            return datetime.datetime.strptime(text, layout).replace(tzinfo=datetime.UTC)
        except ValueError:
            continue
    raise ValueError(f"not an RFC 3339 UTC time: {text!r}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_enum_values=False)


class DestroyMode(StrEnum):
    STOP = "Stop"
    SHUTDOWN = "Shutdown"


class PowerState(StrEnum):
    RUNNING = "Running"
    STOPPED = "Stopped"


class DeletionPolicy(StrEnum):
    DELETE = "Delete"
    ORPHAN = "Orphan"


class NicModel(StrEnum):
    VIRTIO = "virtio"
    E1000 = "e1000"
    RTL8139 = "rtl8139"
    VMXNET3 = "vmxnet3"


class ConnectionRef(_Model):
    """Reference to the Secret holding the Proxmox VE endpoint and API token."""

    name: str = Field(
        min_length=1,
        max_length=253,
        description="Name of a Secret in the same namespace with the keys endpoint, tokenId, "
        "tokenSecret and optionally caCert and insecureSkipTLSVerify.",
    )


class CloneFrom(_Model):
    """An existing VM or template to clone."""

    vmid: VMID = Field(description="VMID of the template or VM to clone.")
    node: str | None = Field(
        default=None,
        description="Node the source lives on. Defaults to the node found in the cluster.",
    )
    full: bool = Field(
        default=True,
        description="Full clone (independent disks). false makes a linked clone, which "
        "Proxmox VE allows only from a template.",
    )
    storage: str | None = Field(
        default=None, description="Target storage for a full clone's disks."
    )


class Source(_Model):
    """Where the VM comes from. Without it an empty VM is created from the spec's fields."""

    clone_from: CloneFrom | None = Field(
        default=None, alias="cloneFrom", description="Clone an existing VM or template."
    )


class Disk(_Model):
    slot: str = Field(
        pattern=r"^(scsi([0-9]|[12][0-9]|30)|virtio([0-9]|1[0-5])|sata[0-5]|ide[0-3])$",
        description="Disk bus and index, e.g. scsi0 or virtio1.",
    )
    storage: str = Field(min_length=1, description="Proxmox VE storage to allocate the disk on.")
    size_gib: int = Field(alias="sizeGiB", ge=1, le=65536, description="Disk size in GiB.")


class Network(_Model):
    slot: str = Field(
        pattern=r"^net([0-9]|[12][0-9]|3[01])$", description="Network device index, e.g. net0."
    )
    model: NicModel = Field(default=NicModel.VIRTIO, description="Emulated NIC model.")
    bridge: str = Field(default="vmbr0", min_length=1, description="Bridge to attach to.")
    vlan: int | None = Field(default=None, ge=1, le=4094, description="VLAN tag.")


class CloudInit(_Model):
    user: str | None = Field(default=None, description="Default user cloud-init creates.")
    ssh_keys: list[str] = Field(
        default_factory=list, alias="sshKeys", description="Public SSH keys for that user."
    )
    ip_config: list[str] = Field(
        default_factory=list,
        alias="ipConfig",
        description="One entry per NIC in Proxmox VE ipconfig syntax, e.g. ip=dhcp or "
        "ip=10.0.0.5/24,gw=10.0.0.1.",
    )


class DestroyPolicy(_Model):
    """How the VM is torn down when the object is deleted."""

    mode: DestroyMode = Field(
        default=DestroyMode.STOP,
        description="Stop (default): a hard stop, which no guest can block. Shutdown: a "
        "graceful ACPI/agent shutdown, and after shutdownTimeoutSeconds a forced stop. "
        "The annotation proxmox.vmop.dev/destroy-mode overrides this, also on an object that "
        "is already being deleted.",
    )
    shutdown_timeout_seconds: int = Field(
        default=120,
        alias="shutdownTimeoutSeconds",
        ge=1,
        le=86400,
        description="Shutdown mode only: how long the guest may take before the forced stop.",
    )
    purge: bool = Field(
        default=True, description="Also remove the VM from backup jobs, HA and replication."
    )
    destroy_unreferenced_disks: bool = Field(
        default=True,
        alias="destroyUnreferencedDisks",
        description="Also destroy disks that belong to the VM but are not in its config.",
    )


class ProxmoxVMSpec(_Model):
    """Desired state of a Proxmox VE virtual machine."""

    connection_ref: ConnectionRef = Field(alias="connectionRef")
    node: str = Field(
        min_length=1, max_length=63, description="Proxmox VE node the VM is created on."
    )
    vmid: VMID | None = Field(
        default=None,
        description="Proxmox VMID. When absent the operator picks a free one (from "
        "/cluster/nextid, skipping ids it handed to other objects); immutable once set.",
    )
    name: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS_NAME,
        description="Proxmox VM name (a DNS name). Defaults to metadata.name.",
    )
    source: Source | None = Field(default=None, description="Clone source; empty VM if unset.")
    cores: int = Field(default=1, ge=1, le=1024, description="CPU cores per socket.")
    sockets: int = Field(default=1, ge=1, le=16, description="CPU sockets.")
    cpu_type: str = Field(
        default="x86-64-v2-AES", alias="cpuType", min_length=1, description="QEMU CPU type."
    )
    memory_mib: int = Field(
        default=2048, alias="memoryMiB", ge=16, le=8_388_608, description="Memory in MiB."
    )
    disks: list[Disk] = Field(default_factory=list, description="Disks to create.")
    networks: list[Network] = Field(default_factory=list, description="Network devices.")
    cloud_init: CloudInit | None = Field(
        default=None, alias="cloudInit", description="Cloud-init settings."
    )
    tags: list[Annotated[str, Field(pattern=TAG, max_length=64)]] = Field(
        default_factory=list,
        description="Proxmox VE tags (lower-case). The operator adds its ownership tag "
        "vmop-<uid> itself.",
    )
    description: str | None = Field(
        default=None, max_length=8192, description="Proxmox VE description (notes)."
    )
    on_boot: bool = Field(
        default=False, alias="onBoot", description="Start the VM when its node boots."
    )
    agent: bool = Field(default=False, description="Enable the QEMU guest agent.")
    power_state: PowerState = Field(
        default=PowerState.RUNNING, alias="powerState", description="Desired power state."
    )
    adopt: bool = Field(
        default=False,
        description="Take over an existing VM at spec.vmid that lacks this object's ownership "
        "tag. Without it such a VM is never touched.",
    )
    deletion_policy: DeletionPolicy = Field(
        default=DeletionPolicy.DELETE,
        alias="deletionPolicy",
        description="Delete (default): destroy the VM with the object. Orphan: release the "
        "object and keep the VM (its ownership tag is removed).",
    )
    destroy: DestroyPolicy = Field(
        default_factory=DestroyPolicy, description="How the VM is destroyed."
    )


class Phase(StrEnum):
    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    RUNNING = "Running"
    STOPPED = "Stopped"
    DELETING = "Deleting"
    FAILED = "Failed"


class ObservedPower(StrEnum):
    RUNNING = "Running"
    STOPPED = "Stopped"
    PAUSED = "Paused"
    UNKNOWN = "Unknown"


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(_Model):
    """A condition in the shape of metav1.Condition."""

    type: str = Field(
        description="Ready, Reconciling, Stalled (the kstatus pair), Deleting or DeletionStalled."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        max_length=1024,
        description="Why, in one CamelCase word (see the API reference for each condition's).",
    )
    message: str = Field(default="", max_length=32768, description="Details for humans.")
    last_transition_time: str = Field(
        alias="lastTransitionTime", description="When status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None,
        alias="observedGeneration",
        ge=0,
        description="The metadata.generation this condition was computed from.",
    )


class DestroyStep(StrEnum):
    STARTING = "Starting"
    STOPPING = "Stopping"
    WAITING_FOR_SHUTDOWN = "WaitingForShutdown"
    FORCING_STOP = "ForcingStop"
    DELETING_VM = "DeletingVM"
    VERIFYING_ABSENCE = "VerifyingAbsence"


class DestroyStatus(_Model):
    """Progress of a destroy, persisted so a restarted operator resumes where it was."""

    started_at: str = Field(alias="startedAt", description="When the destroy began (RFC 3339).")
    mode: DestroyMode = Field(description="The destroy mode in force (annotation or spec).")
    step: DestroyStep = Field(description="The current step of the destroy.")
    vmid: int | None = Field(
        default=None,
        description="The VM being destroyed when it is not status.vmid: another VM found "
        "carrying this object's ownership tag (made by a pass that acted on a stale object).",
    )
    task_upid: str | None = Field(
        default=None, alias="taskUpid", description="The Proxmox task of the current step."
    )
    shutdown_deadline: str | None = Field(
        default=None,
        alias="shutdownDeadline",
        description="Shutdown mode: when the forced stop is due, shutdownTimeoutSeconds after "
        "Proxmox accepted the shutdown (before that, after startedAt).",
    )
    task_succeeded: bool = Field(
        default=False,
        alias="taskSucceeded",
        description="The last task of this step ended OK (e.g. HA accepted the stop).",
    )
    fallback_used: bool = Field(
        default=False,
        alias="fallbackUsed",
        description="The graceful shutdown ran out of time and a forced stop was used.",
    )
    attempts: int = Field(default=0, ge=0, description="Proxmox calls made for the current step.")
    failures: int = Field(
        default=0,
        ge=0,
        description="Failures of the current step since it last made progress; the wait "
        "before the next try grows with it.",
    )
    last_error: str = Field(
        default="",
        alias="lastError",
        max_length=4096,
        description="The last error of the current step; empty once the step moves on.",
    )


class TaskRef(_Model):
    """A Proxmox task the operator started outside a destroy and has not seen finish yet."""

    upid: str = Field(description="The task's UPID.")
    action: str = Field(description="What the task does: create, clone, start or stop.")


class ProxmoxVMStatus(_Model):
    """Observed state, written by the operator."""

    observed_generation: int | None = Field(
        default=None,
        alias="observedGeneration",
        description="The metadata.generation the operator last acted on (Flux's kstatus reads it).",
    )
    vmid: int | None = Field(default=None, description="VMID of the VM this object owns.")
    node: str | None = Field(default=None, description="Node the VM was last seen on.")
    phase: Phase | None = Field(
        default=None, description="A one-word summary; the conditions carry the detail."
    )
    power_state: ObservedPower | None = Field(
        default=None, alias="powerState", description="The VM's power state as last observed."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, Reconciling, Stalled, and while deleting Deleting and DeletionStalled.",
    )
    task: TaskRef | None = Field(default=None, description="Provisioning or power task in flight.")
    destroy: DestroyStatus | None = None
