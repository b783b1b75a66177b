"""Users, API tokens, ACLs and pools: who may do what, as pve-access-control decides it.

The model follows pve-access-control:

* PVE/RPCEnvironment.pm ``permissions``: ``root@pam`` holds every privilege; a token without
  privilege separation holds exactly its user's privileges; a privilege-separated token holds
  only what both its own ACLs and its user's ACLs grant on the path (``compile_acl_path``
  intersects them). Other users hold only what ACLs grant.
* PVE/AccessControl.pm ``roles``: the ACL path is walked from ``/`` down; at each level an
  entry for the principal that applies (the checked path itself, or a propagating entry above
  it) *replaces* what was found higher up. Token entries are looked up under the full token
  id, user entries under the user.
* ``compile_acl_path`` pool roles: a VM in pool P also gets the roles its principal has on
  ``/pool/P`` (including propagated ones), unless a regular ACL already set them; ``NoAccess``
  from a pool trumps the VM's regular roles, never the other way round.

A grant here names privileges (``VM.Audit``) or built-in roles (``PVEVMUser``); each
privilege behaves as a one-privilege role. Groups and custom roles are not modelled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .errors import ApiError

ROOT_USER = "root@pam"

# pve-access-control PVE/AccessControl.pm $privgroups: category -> (root, admin, user, audit).
# The union over 7.4 .. 9.x (VM.Monitor is gone in 9.0, VM.GuestAgent.* came with it).
_PRIVILEGE_GROUPS: Mapping[str, tuple[tuple[str, ...], ...]] = {
    "VM": (
        (),
        (
            "VM.Config.Disk",
            "VM.Config.CPU",
            "VM.Config.Memory",
            "VM.Config.Network",
            "VM.Config.HWType",
            "VM.Config.Options",
            "VM.Allocate",
            "VM.Clone",
            "VM.Migrate",
            "VM.Replicate",
            "VM.Snapshot",
            "VM.Snapshot.Rollback",
            "VM.GuestAgent.Unrestricted",
            "VM.Monitor",
        ),
        (
            "VM.Config.CDROM",
            "VM.Config.Cloudinit",
            "VM.Console",
            "VM.Backup",
            "VM.PowerMgmt",
            "VM.GuestAgent.FileRead",
            "VM.GuestAgent.FileSystemMgmt",
            "VM.GuestAgent.FileWrite",
        ),
        ("VM.Audit", "VM.GuestAgent.Audit"),
    ),
    "Sys": (
        ("Sys.PowerMgmt", "Sys.Modify", "Sys.Incoming", "Sys.AccessNetwork"),
        ("Sys.Console", "Sys.Syslog"),
        (),
        ("Sys.Audit",),
    ),
    "Datastore": (
        (),
        ("Datastore.Allocate", "Datastore.AllocateTemplate"),
        ("Datastore.AllocateSpace",),
        ("Datastore.Audit",),
    ),
    "SDN": ((), ("SDN.Allocate", "SDN.Audit"), ("SDN.Use",), ("SDN.Audit",)),
    "User": (("Realm.Allocate",), ("User.Modify", "Group.Allocate", "Realm.AllocateUser"), (), ()),
    "Pool": ((), ("Pool.Allocate",), ("Pool.Audit",), ("Pool.Audit",)),
    "Mapping": ((), ("Mapping.Modify",), ("Mapping.Use",), ("Mapping.Audit",)),
}
PRIVILEGES = frozenset(
    {"Permissions.Modify"}
    | {p for groups in _PRIVILEGE_GROUPS.values() for group in groups for p in group}
)


def _built_in_roles() -> dict[str, frozenset[str]]:
    """AccessControl.pm ``create_roles``: PVE<Cat>Admin, PVE<Cat>User, PVEAdmin, PVEAuditor."""
    roles: dict[str, set[str]] = {"PVEAdmin": set(), "PVEAuditor": set()}
    for category, (_root, admin, user, audit) in _PRIVILEGE_GROUPS.items():
        roles.setdefault(f"PVE{category}Admin", set()).update(admin, user, audit)
        roles["PVEAdmin"].update(admin, user, audit)
        if user:
            roles.setdefault(f"PVE{category}User", set()).update(user, audit)
        roles["PVEAuditor"].update(audit)
    roles["PVEAdmin"].discard("Mapping.Modify")
    roles["PVETemplateUser"] = {"VM.Clone", "VM.Audit"}
    built = {name: frozenset(privileges) for name, privileges in roles.items()}
    built["Administrator"] = PRIVILEGES
    built["NoAccess"] = frozenset()
    return built


ROLES = _built_in_roles()
NO_ACCESS = "NoAccess"

# pve-access-control PVE/AccessControl.pm $token_full_regex: user@realm!tokenid.
TOKEN_ID = re.compile(r"(?P<user>[^\s:@!]+@[A-Za-z][A-Za-z0-9.\-_]*)!(?P<token>[A-Za-z][\w.\-]*)")


def split_token(principal: str) -> tuple[str, str | None]:
    """``user@realm!token`` -> (``user@realm``, ``token``); a user -> (user, None)."""
    match = TOKEN_ID.fullmatch(principal)
    if match is None:
        return principal, None
    return match["user"], match["token"]


def normalize_path(path: str) -> str:
    """AccessControl.pm ``normalize_path``: one leading slash, no doubled or trailing ones."""
    parts = [part for part in path.split("/") if part]
    return "/" + "/".join(parts)


def task_visible_to(task_user: str, caller: str) -> bool:
    """pve-manager PVE/API2/Tasks.pm ``$check_task_user`` on a decoded UPID: a token's task
    belongs to the token and to its user; a user's task only to that user (not its tokens)."""
    owner, token = split_token(task_user)
    if token is not None:
        return caller in (task_user, owner)
    return caller == task_user


def permission_denied(what: str | None = None) -> ApiError:
    """pve-common PVE/Exception.pm ``raise_perm_exc``: HTTP 403 ``Permission check failed``."""
    message = "Permission check failed"
    if what:
        message += f" ({what})"
    return ApiError(403, message)


@dataclass(frozen=True)
class Perm:
    """A route's ``['perm', PATH, PRIVS, any => ..., require_param => ...]`` check."""

    path: str
    privileges: tuple[str, ...]
    any: bool = False
    require_param: str | None = None


@dataclass(frozen=True)
class AllOf:
    """``['and', CHECK, ...]``."""

    checks: tuple[Check, ...]


@dataclass(frozen=True)
class AnyOf:
    """``['or', CHECK, ...]``: when none passes, a bare ``Permission check failed``."""

    checks: tuple[Check, ...]


Check = Perm | AllOf | AnyOf


@dataclass
class Permissions:
    """The ACL tree, pool membership and which tokens are privilege-separated."""

    # path -> principal (user or token id) -> granted name (privilege or role) -> propagate
    acl: dict[str, dict[str, dict[str, bool]]] = field(default_factory=dict)
    pools: set[str] = field(default_factory=set)
    pool_of: dict[int, str] = field(default_factory=dict)
    privsep_tokens: set[str] = field(default_factory=set)

    # ------------------------------------------------------------- changes

    def grant(
        self, principal: str, path: str, names: Iterable[str], *, propagate: bool = True
    ) -> None:
        """Add privileges or roles to ``principal``'s ACL entry on ``path`` (``pveum acl
        modify``: more roles on an existing entry add up)."""
        chosen = list(names)
        for name in chosen:
            if name not in PRIVILEGES and name not in ROLES:
                raise ValueError(f"invalid privilege or role {name!r}")
        if not chosen:
            raise ValueError("grant needs at least one privilege or role")
        if path.startswith("/pool/"):
            self.pools.add(normalize_path(path).split("/")[2])
        entry = self.acl.setdefault(normalize_path(path), {}).setdefault(principal, {})
        for name in chosen:
            entry[name] = propagate

    def revoke(self, principal: str, path: str) -> None:
        """Remove ``principal``'s whole ACL entry on ``path``."""
        entries = self.acl.get(normalize_path(path), {})
        entries.pop(principal, None)

    def set_pool(self, vmid: int, pool: str | None) -> None:
        if pool is None:
            self.pool_of.pop(vmid, None)
            return
        self.pools.add(pool)
        self.pool_of[vmid] = pool

    def remove_vm(self, vmid: int) -> None:
        """AccessControl.pm ``remove_vm_access``: the VM's ACLs and its pool membership go."""
        self.acl.pop(f"/vms/{vmid}", None)
        self.pool_of.pop(vmid, None)

    # ----------------------------------------------------------- evaluation

    def _roles(self, principal: str, path: str) -> dict[str, bool]:
        """AccessControl.pm ``roles`` for one principal, no pools: the deepest entry wins."""
        roles: dict[str, bool] = {}
        parts = [part for part in path.split("/") if part]
        prefixes = ["/"] + ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]
        for depth, prefix in enumerate(prefixes):
            final = depth == len(prefixes) - 1
            entry = self.acl.get(prefix, {}).get(principal)
            if not entry:
                continue
            applying = {name: prop for name, prop in entry.items() if final or prop}
            if applying:
                roles = applying
        return roles

    def _privileges_of(self, principal: str, path: str) -> set[str]:
        """RPCEnvironment.pm ``compile_acl_path`` for one principal, pool roles included."""
        roles = dict(self._roles(principal, path))
        match = re.fullmatch(r"/vms/(\d+)", path)
        pool = self.pool_of.get(int(match[1])) if match else None
        if pool is not None and NO_ACCESS not in roles:
            pool_roles = self._roles(principal, f"/pool/{pool}")
            if NO_ACCESS in pool_roles:
                roles = {NO_ACCESS: False}
            else:
                for name in pool_roles:
                    roles.setdefault(name, False)
        privileges: set[str] = set()
        for name in roles:
            privileges |= ROLES.get(name, frozenset({name}))
        return privileges

    def privileges(self, principal: str, path: str) -> frozenset[str]:
        """RPCEnvironment.pm ``permissions``: what ``principal`` holds on ``path``."""
        if principal == ROOT_USER:
            return PRIVILEGES
        path = normalize_path(path)
        user, token = split_token(principal)
        if token is None:
            return frozenset(self._privileges_of(principal, path))
        owner = self.privileges(user, path)
        if principal not in self.privsep_tokens:
            return owner
        own = self._privileges_of(principal, path)
        # root@pam's tokens are not intersected with root's (already everything).
        return frozenset(own if user == ROOT_USER else own & owner)

    def allowed(
        self, principal: str, path: str, privileges: Iterable[str], *, any_of: bool = False
    ) -> bool:
        held = self.privileges(principal, path)
        wanted = list(privileges)
        if any_of:
            return any(p in held for p in wanted)
        return all(p in held for p in wanted)

    def check(
        self, principal: str, path: str, privileges: Iterable[str], *, any_of: bool = False
    ) -> None:
        """RPCEnvironment.pm ``check``/``check_any``: 403 naming the path and the privilege."""
        wanted = list(privileges)
        held = self.privileges(principal, path)
        if any_of:
            if not any(p in held for p in wanted):
                raise permission_denied(f"{normalize_path(path)}, {'|'.join(wanted)}")
            return
        for privilege in wanted:  # the first missing one is named
            if privilege not in held:
                raise permission_denied(f"{normalize_path(path)}, {privilege}")

    def check_vm(
        self,
        principal: str,
        vmid: int,
        pool: str | None,
        privileges: Iterable[str],
        *,
        any_of: bool = False,
    ) -> None:
        """RPCEnvironment.pm ``check_vm_perm``: the pool first (silently), then /vms/ID."""
        wanted = list(privileges)
        if pool and self.allowed(principal, f"/pool/{pool}", wanted, any_of=any_of):
            return
        self.check(principal, f"/vms/{vmid}", wanted, any_of=any_of)

    def check_route(self, check: Check | None, principal: str, params: Mapping[str, str]) -> None:
        """RPCEnvironment.pm ``check_api2_permissions``/``exec_api2_perm_check``; ``None`` is
        ``user => 'all'`` (the handler checks inside, if at all)."""
        if principal == ROOT_USER or check is None:
            return
        self._run_check(check, principal, params, noerr=False)

    def _run_check(
        self, check: Check, principal: str, params: Mapping[str, str], *, noerr: bool
    ) -> bool:
        if isinstance(check, AllOf):
            return all(self._run_check(sub, principal, params, noerr=noerr) for sub in check.checks)
        if isinstance(check, AnyOf):
            if any(self._run_check(sub, principal, params, noerr=True) for sub in check.checks):
                return True
            if noerr:
                return False
            raise permission_denied()
        if check.require_param and params.get(check.require_param) is None:
            if noerr:
                return False
            raise permission_denied()
        path = re.sub(r"\{(\w+)\}", lambda m: str(params.get(m[1], "")), check.path)
        if noerr:
            return self.allowed(principal, path, check.privileges, any_of=check.any)
        self.check(principal, path, check.privileges, any_of=check.any)
        return True


# qemu-server PVE/API2/Qemu.pm $vm_config_perm_list: a config update needs any one of them on
# the route; then $check_vm_modify_config_perm checks each option's own privilege.
VM_CONFIG_PRIVILEGES = (
    "VM.Config.Disk",
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.HWType",
    "VM.Config.Options",
    "VM.Config.Cloudinit",
)
_CPU_OPTIONS = frozenset(
    {"cores", "cpu", "cpulimit", "cpuunits", "numa", "smp", "sockets", "vcpus"}
)
_MEMORY_OPTIONS = frozenset({"memory", "balloon", "shares", "allow-ksm"})
_HWTYPE_OPTIONS = frozenset(
    {"acpi", "hotplug", "kvm", "machine", "scsihw", "smbios1", "tablet", "vga", "watchdog"}
    | {"audio0", "rng0"}
)
_GENERAL_OPTIONS = frozenset(
    {"agent", "autostart", "bios", "description", "keyboard", "localtime", "migrate_downtime"}
    | {"migrate_speed", "name", "onboot", "ostype", "protection", "reboot", "startdate"}
    | {"startup", "tdf", "template"}
)
_DISK_OPTIONS = frozenset({"boot", "bootdisk", "vmstatestorage"})
_CLOUDINIT_OPTIONS = frozenset(
    {"cicustom", "cipassword", "citype", "ciuser", "ciupgrade", "nameserver", "searchdomain"}
    | {"sshkeys"}
)
# Checked elsewhere (storage access, serial, tags) or value-dependent.
_DRIVE = re.compile(r"(ide|sata|scsi|virtio)\d+|efidisk0|tpmstate0|cdrom")
_SKIPPED = re.compile(r"(unused|serial|usb|hostpci|virtiofs)\d+|tags")


def check_vm_config_options(
    permissions: Permissions, principal: str, vmid: int, pool: str | None, keys: Iterable[str]
) -> None:
    """qemu-server PVE/API2/Qemu.pm ``$check_vm_modify_config_perm``: each option's privilege
    on the VM; an option of no known group is for ``root@pam`` only (its tokens included)."""
    if principal == ROOT_USER:
        return
    for key in keys:
        if _DRIVE.fullmatch(key) or _SKIPPED.fullmatch(key):
            continue
        if key in _CPU_OPTIONS or re.fullmatch(r"numa\d+", key):
            wanted, any_of = ["VM.Config.CPU"], False
        elif key in _MEMORY_OPTIONS:
            wanted, any_of = ["VM.Config.Memory"], False
        elif key in _HWTYPE_OPTIONS:
            wanted, any_of = ["VM.Config.HWType"], False
        elif key in _GENERAL_OPTIONS:
            wanted, any_of = ["VM.Config.Options"], False
        elif key in _DISK_OPTIONS:
            wanted, any_of = ["VM.Config.Disk"], False
        elif re.fullmatch(r"net\d+", key):
            wanted, any_of = ["VM.Config.Network"], False
        elif key in _CLOUDINIT_OPTIONS or re.fullmatch(r"ipconfig\d+", key):
            wanted, any_of = ["VM.Config.Cloudinit", "VM.Config.Network"], True
        else:
            raise ApiError(500, f"only root can set '{key}' config")
        permissions.check_vm(principal, vmid, pool, wanted, any_of=any_of)
        if key == "startup":  # it changes how the host boots
            permissions.check(principal, "/", ["Sys.Modify"])


def check_serial_options(
    permissions: Permissions,
    principal: str,
    vmid: int,
    pool: str | None,
    values: Mapping[str, object],
) -> None:
    """Qemu.pm ``$check_vm_create_serial_perm``: a socket needs VM.Config.HWType, a real
    device root@pam."""
    if principal == ROOT_USER:
        return
    for key, value in values.items():
        if not re.fullmatch(r"serial\d+", key):
            continue
        if value != "socket":
            raise ApiError(500, f"only root can set '{key}' config for real devices")
        permissions.check_vm(principal, vmid, pool, ["VM.Config.HWType"])
