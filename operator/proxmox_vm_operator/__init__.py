"""proxmox-vm-operator: reconcile Proxmox VE virtual machines from ProxmoxVM custom resources."""

__version__ = "0.1.0"
