"""Strict parameter checking with Proxmox VE's wording.

PVE validates every request against a JSON schema before the handler runs: unknown
parameters, malformed values and booleans other than ``0``/``1`` are a 400 with a per-parameter
``errors`` map. Being this strict is the point: a client that sends ``True`` must fail here as
it would on a real node.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .errors import param_error
from .versions import CIUPGRADE, HA_MANAGED, OVERRULE_SHUTDOWN, PveVersion

ROOT_USER = "root@pam"
# pve-common JSONSchema.pm validate: a property the schema does not define, with
# additionalProperties => 0 (every API method's parameters).
NOT_IN_SCHEMA = (
    "property is not defined in schema and the schema does not allow additional properties"
)


class InvalidValue(Exception):
    """A value failed its type or format check; the text is PVE's per-parameter message."""


Parser = Callable[[object], object]


def boolean(raw: object) -> object:
    if raw is True or raw is False:  # a JSON body may carry real booleans
        return int(raw)
    if raw in ("1", "0"):
        return int(str(raw))
    raise InvalidValue(f"type check ('boolean') failed - got '{raw}'")


def integer(minimum: int | None = None, maximum: int | None = None) -> Parser:
    def parse(raw: object) -> object:
        text = str(raw)
        if isinstance(raw, bool) or not re.fullmatch(r"[+-]?\d+", text):
            raise InvalidValue(f"type check ('integer') failed - got '{raw}'")
        value = int(text)
        if minimum is not None and value < minimum:
            raise InvalidValue(f"value must have a minimum value of {minimum}")
        if maximum is not None and value > maximum:
            raise InvalidValue(f"value must have a maximum value of {maximum}")
        return value

    return parse


def number(raw: object) -> object:
    try:
        return float(str(raw))
    except ValueError:
        raise InvalidValue(f"type check ('number') failed - got '{raw}'") from None


def string(max_length: int | None = None, pattern: str | None = None, what: str = "") -> Parser:
    """A string; with ``what`` the pattern is a named PVE *format*, else a schema ``pattern``."""
    compiled = re.compile(pattern) if pattern else None

    def parse(raw: object) -> object:
        text = str(raw)
        if compiled is not None and not compiled.fullmatch(text):
            if what:  # check_format dies with a newline-terminated text, kept in the reply
                raise InvalidValue(f"invalid format - value does not look like a valid {what}\n")
            raise InvalidValue("value does not match the regex pattern")
        if max_length is not None and len(text) > max_length:
            raise InvalidValue(f"value may only be {max_length} characters long")
        return text

    return parse


def enum(*values: str) -> Parser:
    def parse(raw: object) -> object:
        if str(raw) not in values:
            listing = ", ".join(values)
            raise InvalidValue(
                f"value '{raw}' does not have a value in the enumeration '{listing}'"
            )
        return str(raw)

    return parse


TAG_PATTERN = re.compile(r"[a-z0-9_][a-z0-9_\-+.]*", re.IGNORECASE)


def normalize_tags(raw: object) -> str:
    """PVE's tag list: split on ``;``, ``,`` or spaces, lower-case, unique, sorted, ``;``-joined."""
    tags = [t for t in re.split(r"[;,\s]+", str(raw)) if t]
    for tag in tags:
        if not TAG_PATTERN.fullmatch(tag):
            # pve_verify_tag's text, prefixed by check_prop, newline kept.
            raise InvalidValue("invalid format - invalid characters in tag\n")
    return ";".join(sorted({t.lower() for t in tags}))


def tags(raw: object) -> object:
    return normalize_tags(raw)


def vmid(raw: object) -> object:
    """``pve-vmid``: an integer, then the format ``^[1-9][0-9]{2,8}$`` (checked before min/max)."""
    text = str(raw)
    if isinstance(raw, bool) or not re.fullmatch(r"[+-]?\d+", text):
        raise InvalidValue(f"type check ('integer') failed - got '{raw}'")
    if not re.fullmatch(r"[1-9][0-9]{2,8}", text):
        raise InvalidValue("invalid format - value does not look like a valid VM ID\n")
    return int(text)


node_name = string(pattern=r"[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?", what="node name")
_LABEL = r"[a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?"
dns_name = string(pattern=rf"({_LABEL}\.)*{_LABEL}", what="DNS name")
text = string()


@dataclass(frozen=True)
class Param:
    parse: Parser
    required: bool = False
    root_only: bool = False
    # The first release whose schema has this parameter; older ones refuse it as unknown.
    since: tuple[int, int] | None = None


@dataclass(frozen=True)
class Schema:
    params: Mapping[str, Param] = field(default_factory=dict)
    # Numbered keys such as net0..net31: (prefix, highest index, parameter).
    indexed: tuple[tuple[str, int, Param], ...] = ()

    def lookup(self, name: str) -> Param | None:
        if name in self.params:
            return self.params[name]
        match = re.fullmatch(r"([a-z]+)(\d+)", name)
        if match:
            for prefix, highest, param in self.indexed:
                if match.group(1) == prefix and int(match.group(2)) <= highest:
                    return param
        return None

    def extend(self, **params: Param) -> Schema:
        return Schema({**self.params, **params}, self.indexed)

    def validate(
        self, raw: Mapping[str, object], user: str | None, version: PveVersion | None = None
    ) -> dict[str, object]:
        """Parse ``raw`` or raise a 400 listing every bad parameter.

        The schema is checked first; the root-only options are refused afterwards, by the
        handler, and only when set (``skiplock=0`` is fine for anyone), as qemu-server does.
        ``version``: the simulated release; parameters it does not know yet are unknown.
        """
        errors: dict[str, str] = {}
        values: dict[str, object] = {}
        for name, value in raw.items():
            param = self.lookup(name)
            if param is not None and param.since and version and not version.at_least(param.since):
                param = None
            if param is None:
                errors[name] = NOT_IN_SCHEMA
                continue
            try:
                values[name] = param.parse(value)
            except InvalidValue as exc:
                errors[name] = str(exc)
        for name, param in self.params.items():
            if param.required and name not in raw:
                errors[name] = "property is missing and it is not optional"
        if errors:
            raise param_error(errors)
        for name, value in values.items():
            param = self.lookup(name)
            if param is not None and param.root_only and value and user != ROOT_USER:
                raise param_error({name: "Only root may use this option."})
        return values


def _p(
    parse: Parser,
    *,
    required: bool = False,
    root_only: bool = False,
    since: tuple[int, int] | None = None,
) -> Param:
    return Param(parse, required, root_only, since)


NODE_PATH = Schema({"node": _p(node_name, required=True)})
VM_PATH = NODE_PATH.extend(vmid=_p(vmid, required=True))

# The qemu config keys the operator and its tests use, with PVE's types.
VM_CONFIG = Schema(
    {
        "name": _p(dns_name),
        "memory": _p(string(pattern=r"(current=)?\d+", what="memory size")),
        "balloon": _p(integer(0)),
        "cores": _p(integer(1, 1024)),
        "sockets": _p(integer(1, 16)),
        "vcpus": _p(integer(1)),
        "cpu": _p(text),
        "cpulimit": _p(number),
        "numa": _p(boolean),
        "scsihw": _p(
            enum("lsi", "lsi53c810", "virtio-scsi-pci", "virtio-scsi-single", "megasas", "pvscsi")
        ),
        "ostype": _p(
            enum(
                "other",
                "wxp",
                "w2k",
                "w2k3",
                "w2k8",
                "wvista",
                "win7",
                "win8",
                "win10",
                "win11",
                "l24",
                "l26",
                "solaris",
            )
        ),
        "agent": _p(text),
        "tags": _p(tags),
        "description": _p(string(max_length=8192)),
        "onboot": _p(boolean),
        "boot": _p(text),
        "protection": _p(boolean),
        "startup": _p(text),
        "hookscript": _p(text),
        "shares": _p(integer(0, 50000)),
        "hotplug": _p(text),
        "machine": _p(text),
        "bios": _p(enum("seabios", "ovmf")),
        "vga": _p(text),
        "kvm": _p(boolean),
        "acpi": _p(boolean),
        "ciuser": _p(text),
        "cipassword": _p(text),
        "citype": _p(enum("configdrive2", "nocloud", "opennebula")),
        "ciupgrade": _p(boolean, since=CIUPGRADE),
        "cicustom": _p(text),
        "sshkeys": _p(text),
        "nameserver": _p(text),
        "searchdomain": _p(text),
        "smbios1": _p(text),
        "vmgenid": _p(text),
        "efidisk0": _p(text),
    },
    indexed=(
        ("net", 31, _p(text)),
        ("scsi", 30, _p(text)),
        ("virtio", 15, _p(text)),
        ("sata", 5, _p(text)),
        ("ide", 3, _p(text)),
        ("ipconfig", 31, _p(text)),
        ("serial", 3, _p(text)),
        ("unused", 255, _p(text)),
    ),
)

CREATE_VM = Schema(
    {**NODE_PATH.params, **VM_CONFIG.params},
    VM_CONFIG.indexed,
).extend(
    vmid=_p(vmid, required=True),
    storage=_p(text),
    pool=_p(text),
    start=_p(boolean),
    force=_p(boolean),
    unique=_p(boolean),
    archive=_p(text),
    bwlimit=_p(integer(0)),
    **{"ha-managed": _p(boolean, since=HA_MANAGED), "live-restore": _p(boolean)},
)

_CONFIG_UPDATE = Schema({**VM_PATH.params, **VM_CONFIG.params}, VM_CONFIG.indexed).extend(
    delete=_p(text),
    revert=_p(text),
    digest=_p(string(max_length=40)),
    force=_p(boolean),
    skiplock=_p(boolean, root_only=True),
)
CONFIG_PUT = _CONFIG_UPDATE
CONFIG_POST = _CONFIG_UPDATE.extend(background_delay=_p(integer(1, 30)))
CONFIG_GET = VM_PATH.extend(current=_p(boolean), snapshot=_p(text))

START = VM_PATH.extend(
    skiplock=_p(boolean, root_only=True),
    stateuri=_p(text, root_only=True),
    migratedfrom=_p(node_name, root_only=True),
    machine=_p(text),
    timeout=_p(integer(0, 86400)),
    targetstorage=_p(text),
    **{"force-cpu": _p(text)},
)
STOP = VM_PATH.extend(
    skiplock=_p(boolean, root_only=True),
    keepActive=_p(boolean, root_only=True),
    migratedfrom=_p(node_name, root_only=True),
    timeout=_p(integer(0)),
    **{"overrule-shutdown": _p(boolean, since=OVERRULE_SHUTDOWN)},
)
SHUTDOWN = VM_PATH.extend(
    timeout=_p(integer(0)),
    forceStop=_p(boolean),
    keepActive=_p(boolean, root_only=True),
    skiplock=_p(boolean, root_only=True),
)
REBOOT = VM_PATH.extend(timeout=_p(integer(0)))
DESTROY = VM_PATH.extend(
    purge=_p(boolean),
    skiplock=_p(boolean, root_only=True),
    **{"destroy-unreferenced-disks": _p(boolean)},
)
CLONE = VM_PATH.extend(
    newid=_p(vmid, required=True),
    name=_p(dns_name),
    description=_p(string(max_length=8192)),
    pool=_p(text),
    snapname=_p(text),
    storage=_p(text),
    format=_p(enum("raw", "qcow2", "vmdk")),
    full=_p(boolean),
    target=_p(node_name),
    bwlimit=_p(integer(0)),
)
VM_LIST = NODE_PATH.extend(full=_p(boolean))
RESOURCES = Schema({"type": _p(enum("vm", "storage", "node", "sdn"))})
NEXTID = Schema({"vmid": _p(vmid)})
TASK_PATH = NODE_PATH.extend(upid=_p(text, required=True))
TASK_LOG = TASK_PATH.extend(start=_p(integer(0)), limit=_p(integer(0)), download=_p(boolean))
TASK_LIST = NODE_PATH.extend(
    vmid=_p(vmid),
    typefilter=_p(text),
    source=_p(enum("archive", "active", "all")),
    errors=_p(boolean),
    limit=_p(integer(0)),
    start=_p(integer(0)),
    userfilter=_p(text),
    statusfilter=_p(text),
    since=_p(integer(0)),
    until=_p(integer(0)),
)
HA_STATE = enum("started", "stopped", "enabled", "disabled", "ignored")
HA_SID = Schema({"sid": _p(string(pattern=r"(vm:|ct:)?\d+", what="HA resource id"), required=True)})
HA_CREATE = HA_SID.extend(
    state=_p(HA_STATE),
    comment=_p(text),
    group=_p(text),
    max_restart=_p(integer(0, 10)),
    max_relocate=_p(integer(0, 10)),
    type=_p(enum("vm", "ct")),
)
HA_LIST = Schema({"type": _p(enum("vm", "ct"))})
TICKET = Schema(
    {
        "username": _p(string(max_length=64), required=True),
        "password": _p(text, required=True),
        "realm": _p(text),
        "otp": _p(text),
        "path": _p(text),
        "privs": _p(text),
        "new-format": _p(boolean),
        "tfa-challenge": _p(text),
    }
)
EMPTY = Schema()
