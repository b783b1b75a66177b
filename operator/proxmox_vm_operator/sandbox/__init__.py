"""The sandbox: local stand-ins for the Kubernetes API (and, elsewhere, Proxmox VE)."""
