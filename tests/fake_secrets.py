"""The credentials Secret as the operator's ClientPool reads it, pointing at a simulator."""

from __future__ import annotations

from proxmox_vm_operator.kube import SecretData, SecretUnavailable
from proxmox_vm_operator.simulator import Simulator


class FakeSecrets:
    """An async Secret reader; every change bumps the resourceVersion, as the API server does."""

    def __init__(
        self,
        sim: Simulator,
        *,
        token_id: str,
        token_secret: str,
        namespace: str = "lab",
        name: str = "pve",
    ) -> None:
        self.key = (namespace, name)
        self.data: dict[str, str] | None = {
            "endpoint": sim.endpoint,
            "tokenId": token_id,
            "tokenSecret": token_secret,
            "caCert": sim.ca_file.read_text(),
        }
        self.resource_version = 1
        self.reads = 0

    def update(self, **changes: str) -> None:
        self.data = {**(self.data or {}), **changes}
        self.resource_version += 1

    def remove(self) -> None:
        self.data = None
        self.resource_version += 1

    def restore(self, data: dict[str, str]) -> None:
        self.data = dict(data)
        self.resource_version += 1

    async def __call__(self, namespace: str, name: str) -> SecretData:
        self.reads += 1
        if self.data is None or (namespace, name) != self.key:
            raise SecretUnavailable(f"Secret {namespace}/{name} not found")
        return SecretData(str(self.resource_version), dict(self.data))
